"""The web console (issue 18): operators find any message and follow its whole way;
each company follows its own submissions. An ASGI application (:mod:`.app`) served over
HTTPS by :mod:`.server`."""
