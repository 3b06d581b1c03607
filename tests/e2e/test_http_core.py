def test_smoke(server):
    st, doc = server.json("GET", "/healthz")
    assert st == 200 and doc == {"status": "ok"}
