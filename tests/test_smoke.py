def test_home_page_for_a_member(admin_client, admin):
    response = admin_client.get("/")
    assert response.status_code == 200
    assert admin.name in response.get_data(as_text=True)
