"""HTTPS variants of python-tuf's network tests, added to the unpacked sdist by pinclient's
compat/run.py (tuf's own files are not edited).

tuf's ``TestFetcher`` and ``TestUpdater`` talk plain ``http://`` to ``tests/simple_server.py``,
which pinclient refuses by design. These classes inherit every test method unchanged and differ in
two things only: tuf's own ``utils.TestServerProcess`` starts pinclient's TLS twin of that server
(``$PINCLIENT_COMPAT_SERVER``), and the URLs say ``https://``. The baseline runs them with tuf's
``Urllib3Fetcher`` trusting the test CA; the pinclient run with ``PinnedFetcher`` pinning it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import tests.test_fetcher_ng as fetcher_ng
import tests.test_updater_ng as updater_ng
from tuf.ngclient import Updater

from tests import utils


def _over_tls(setup: Callable[[], None]) -> None:
    original = utils.TestServerProcess
    utils.TestServerProcess = functools.partial(  # type: ignore[misc]
        original, server=os.environ["PINCLIENT_COMPAT_SERVER"])
    try:
        setup()
    finally:
        utils.TestServerProcess = original  # type: ignore[misc]


def _https(url: str) -> str:
    assert url.startswith("http://"), url
    return "https://" + url[len("http://"):]


class TestFetcherHTTPS(fetcher_ng.TestFetcher):
    @classmethod
    def setUpClass(cls) -> None:
        _over_tls(super().setUpClass)
        cls.url_prefix = _https(cls.url_prefix)
        cls.url = _https(cls.url)


class TestUpdaterHTTPS(updater_ng.TestUpdater):
    @classmethod
    def setUpClass(cls) -> None:
        _over_tls(super().setUpClass)

    def setUp(self) -> None:
        super().setUp()
        self.metadata_url = _https(self.metadata_url)
        self.targets_url = _https(self.targets_url)
        self.updater = Updater(metadata_dir=self.client_directory, metadata_base_url=self.metadata_url,
                               target_dir=self.dl_dir, target_base_url=self.targets_url, bootstrap=None)
