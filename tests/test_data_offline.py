"""TFDS offline: a dataset neither prepared nor reachable is refused at once, with no download."""

import socket
import time

import pytest

from keras_resnet import data

tfds = pytest.importorskip("tensorflow_datasets")
from keras_resnet.data import tfds_sources  # noqa: E402

SOURCE_HOST = "www.cs.toronto.edu"   # where TFDS's cifar10 builder downloads from


@pytest.fixture
def downloads(monkeypatch):
    """Every download TFDS is asked for (none is made)."""
    asked = []
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda self, *a, **k: asked.append(self.name))
    return asked


def network(monkeypatch, answering=(), delay=0.0):
    """Fake sockets: only ``answering`` hosts connect; every other one fails after ``delay``."""
    tried = []

    class Connection:
        def close(self):
            pass

    def create_connection(address, timeout=None, *args, **kwargs):
        tried.append((address, timeout))
        if address[0] in answering:
            return Connection()
        time.sleep(delay)
        raise OSError(f"{address[0]}: network unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return tried


@pytest.mark.parametrize("name, archive", [("cifar10", "cifar-10-binary.tar.gz"),
                                           ("cifar100", "cifar-100-binary.tar.gz")])
def test_offline_dataset_is_refused_at_once_without_a_download(name, archive, tmp_path,
                                                                monkeypatch, downloads):
    tried = network(monkeypatch)
    start = time.monotonic()
    with pytest.raises(data.DataError) as info:
        data.load(name, tfds_data_dir=str(tmp_path))
    assert time.monotonic() - start < 3.0
    message = str(info.value)
    assert message.startswith(f"Could not download and prepare `name`={name!r} (--dataset)")
    assert "use --dataset digits|synthetic or --data-dir" in message and "\n" not in message
    assert f"{SOURCE_HOST} and storage.googleapis.com not reachable within 3 s" in message
    assert downloads == []
    assert sorted(host for (host, port), _ in tried) == ["storage.googleapis.com", SOURCE_HOST]
    assert {(port, timeout) for (host, port), timeout in tried} == {(443, 3.0)}
    assert archive in str(next(iter(tfds.builder(name, data_dir=str(tmp_path)).url_infos)))


@pytest.mark.parametrize("answering", [{SOURCE_HOST}, {"storage.googleapis.com"}])
def test_a_reachable_source_or_cloud_copy_lets_tfds_download(answering, tmp_path, monkeypatch,
                                                             downloads):
    network(monkeypatch, answering=answering)
    with pytest.raises(Exception):   # the faked download prepared nothing to read
        data.load("cifar10", tfds_data_dir=str(tmp_path))
    assert downloads == ["cifar10"]


def test_an_archive_in_the_download_cache_needs_no_network(tmp_path, monkeypatch, downloads):
    tried = network(monkeypatch)
    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    (url, info), = builder.url_infos.items()
    from tensorflow_datasets.core.download import resource

    cached = tmp_path / "downloads" / "cifar10" / resource.get_dl_fname(url, info.checksum)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"archive")
    (cached.parent / (cached.name + ".INFO")).write_text("{}")
    with pytest.raises(Exception):
        data.load("cifar10", tfds_data_dir=str(tmp_path))
    assert downloads == ["cifar10"] and tried == []


def test_a_silent_host_costs_the_timeout_not_more(monkeypatch):
    network(monkeypatch, delay=30.0)
    start = time.monotonic()
    assert tfds_sources.reachable(["a.example", "b.example"], timeout=0.3) == set()
    assert time.monotonic() - start < 1.0
    network(monkeypatch, answering={"b.example"})
    assert tfds_sources.reachable(["a.example", "b.example"], timeout=0.3) == {"b.example"}
