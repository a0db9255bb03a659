"""Helpers shared by the tests (servers, logs, rule files, waiting, the browser); no tests in here."""
