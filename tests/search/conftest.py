from tests.api.conftest import bearer, make_armoire, make_token, store_file  # noqa: F401
