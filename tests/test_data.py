import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from amnesiac.data import ArrayDataset, WithIds, load_dataset
from amnesiac.data.cifar import load_cifar
from amnesiac.data.idx import download_idx, read_idx
from amnesiac.errors import ConfigError, DatasetError, RequestError, UnknownNameError
from conftest import make_cifar, make_idx_dataset, write_idx


def test_digits_split_is_stable_and_normalised():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert len(a.train) + len(a.test) == 1797
    assert torch.equal(a.train.targets, b.train.targets) and torch.equal(a.train.images, b.train.images)
    assert a.train.ids.tolist() == list(range(len(a.train)))
    x, y, i = a.train[5]
    assert x.shape == (1, 8, 8) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    # every class is in both splits, in about the same proportion
    assert set(a.test.targets.tolist()) == set(range(10))


def test_batched_indexing_matches_single_items():
    ds = load_dataset("digits").train
    xs, ys, ids = ds[[3, 7, 11]]
    for k, pos in enumerate([3, 7, 11]):
        x, y, i = ds[pos]
        assert torch.equal(xs[k], x) and int(ys[k]) == int(y) and int(ids[k]) == int(i)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_reader_reads_mnist_layout(tmp_path, compress):
    arrays = make_idx_dataset(tmp_path / "mnist", compress=compress)
    bundle = load_dataset("mnist", data_dir=tmp_path)
    assert len(bundle.train) == 50 and len(bundle.test) == 20
    assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert bundle.train.targets.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    x, _, _ = bundle.train[0]
    assert x.shape == (1, 28, 28)


def test_idx_torchvision_layout_is_found(tmp_path):
    make_idx_dataset(tmp_path / "FashionMNIST" / "raw")
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path).train) == 50


def test_idx_bad_magic_names_the_file(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x12\x34\x08\x03" + b"\0" * 20)
    with pytest.raises(DatasetError, match="bad.*not an IDX file"):
        read_idx(p)


def test_idx_truncated_file_is_reported(tmp_path):
    p = write_idx(tmp_path / "imgs", np.zeros((5, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(p)


def test_idx_label_count_mismatch(tmp_path):
    make_idx_dataset(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte", np.zeros(49, np.uint8))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte: expected 50 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_bad_gzip_is_reported(tmp_path):
    make_idx_dataset(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and "data_dir=DIR" in msg and "download=True" in msg  # the parameters
    from amnesiac.cli.common import in_flags

    assert "--data-dir DIR" in in_flags(msg) and "--download" in in_flags(msg)  # as the command line shows them


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_verifies_checksums(http_dir, tmp_path):
    served, url = http_dir
    make_idx_dataset(served, compress=True)
    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in served.iterdir()}
    target = tmp_path / "dl"
    download_idx("mnist", target, mirrors=["http://127.0.0.1:9/", url], checksums=sums, timeout=5)
    assert sorted(p.name for p in target.iterdir()) == sorted(sums)
    assert len(load_dataset("mnist", data_dir=tmp_path / "dl").train) == 50


def test_download_rejects_a_wrong_checksum_and_keeps_nothing(http_dir, tmp_path):
    served, url = http_dir
    make_idx_dataset(served, compress=True)
    sums = {p.name: "0" * 32 for p in served.iterdir()}
    target = tmp_path / "dl"
    with pytest.raises(DatasetError, match="checksum"):
        download_idx("mnist", target, mirrors=[url], checksums=sums, timeout=5)
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("archive", [False, True])
def test_cifar_reader(tmp_path, name, archive):
    written = make_cifar(tmp_path, name, archive=archive)
    bundle = load_dataset(name, data_dir=tmp_path)
    n_train = sum(len(labels) for _, labels in written["train"])
    assert len(bundle.train) == n_train and len(bundle.test) == 6
    first_data, first_labels = written["train"][0]
    assert torch.equal(bundle.train.images[0], torch.from_numpy(first_data[0].reshape(3, 32, 32)))
    assert bundle.train.targets[: len(first_labels)].tolist() == first_labels
    assert bundle.info.num_classes == (100 if name == "cifar100" else 10)


def test_cifar_refuses_code_in_pickles(tmp_path):
    import pickle

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "train").write_bytes(pickle.dumps({"data": Evil()}))
    (folder / "test").write_bytes(pickle.dumps({}))
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        load_cifar("cifar100", [tmp_path])


def test_cifar_malformed_shape(tmp_path):
    import pickle

    make_cifar(tmp_path, "cifar100")
    (tmp_path / "cifar-100-python" / "test").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}))
    with pytest.raises(DatasetError, match=r"test: expected uint8 data of shape \(N, 3072\)"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_cifar_missing(tmp_path):
    with pytest.raises(DatasetError, match="cifar-100-python.tar.gz"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_unknown_dataset_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'mnist'"):
        load_dataset("mnsit")


def test_with_ids_wrapper_and_subsets():
    base = TensorDataset(torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 3]))
    ds = WithIds(base, ids=[40, 41, 42, 43])
    assert int(ds[3][2]) == 43
    with pytest.raises(ConfigError, match="unique"):
        WithIds(base, ids=[1, 1, 2, 3])
    arr = ArrayDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), [10, 11, 12, 13])
    assert arr.without_ids([11]).ids.tolist() == [10, 12, 13]
    assert arr.only_ids([13, 10]).ids.tolist() == [10, 13]
    assert arr.ids_of_class(1).tolist() == [11, 13]
    with pytest.raises(RequestError, match="not in this dataset: 99"):
        arr.positions_of([10, 99])


def test_debian_fashion_mnist_if_installed():
    from amnesiac.data import DEBIAN_FASHION_MNIST

    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist is not installed")
    bundle = load_dataset("fashion-mnist", data_dir=Path("/nonexistent"))
    assert len(bundle.train) == 60000 and len(bundle.test) == 10000
