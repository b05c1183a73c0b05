"""Strings shared by the report tests (imported by name; kept out of conftest)."""

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)> | pipes'
