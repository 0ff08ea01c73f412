"""gunicorn settings read from the working directory (``gunicorn wsgi:app`` run from the checkout).

Command-line options override them; the README's production command and the benchmarks
start gunicorn from here.
"""

# Keep idle connections longer than the clients and proxies in front keep theirs (httpx 5 s,
# nginx's upstream keepalive_timeout 60 s), so that the client always closes first. With
# gunicorn's default of 2 s the worker closed connections the client still held as reusable:
# a request sent as the worker closed its idle socket was cut (ReadError, RemoteProtocolError;
# issue 18, 1-3 per 5-minute load run, nothing in the server log because no request was read).
keepalive = 75
