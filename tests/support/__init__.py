"""What the tests share: the test server, the proxy, keys, running chatcli, pty helpers and session builders."""
