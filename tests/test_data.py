import numpy as np
import pytest

from pipeline.config import DataConfig
from pipeline.data import DataError, dataset_file, load_splits, prepare, read_npz, write_npz


def test_digits_default_is_real_and_offline():
    arrays = prepare(DataConfig(image_size=16), seed=0)
    assert arrays["x_train"].shape[1:] == (1, 16, 16) and arrays["x_train"].dtype == np.uint8
    assert len(arrays["x_train"]) + len(arrays["x_test"]) == 1797
    assert set(np.unique(arrays["y_test"])) == set(range(10))
    assert arrays["x_train"].max() == 255 and arrays["x_train"].min() == 0


def test_npz_roundtrip_and_stats(tmp_path):
    cfg = DataConfig(root=str(tmp_path))
    arrays = prepare(DataConfig(image_size=16), seed=0)
    write_npz(arrays, dataset_file(cfg))
    splits = load_splits(cfg)
    assert splits.num_classes == 10 and splits.channels == 1
    assert 0 < splits.mean[0] < 1 and 0 < splits.std[0] < 1
    assert np.array_equal(splits.x_test.numpy(), arrays["x_test"])


def test_user_npz_in_the_shared_format(cifar_mini, tmp_path):
    cfg = DataConfig(dataset="npz", path=str(cifar_mini), root=str(tmp_path))
    arrays = prepare(cfg)
    assert arrays["x_train"].shape == (3805, 3, 32, 32) and len(arrays["y_test"]) == 761


@pytest.mark.parametrize("change,match", [
    (lambda a: a.pop("y_test"), "missing arrays"),
    (lambda a: a.__setitem__("x_train", a["x_train"].astype(np.float32)), "uint8"),
    (lambda a: a.__setitem__("y_train", a["y_train"][:-1]), "one per image"),
    (lambda a: a.__setitem__("y_test", a["y_test"] - 5), "labels must lie"),
    (lambda a: a.__setitem__("x_test", a["x_test"][:, :, :8]), "differ in shape"),
])
def test_bad_arrays_are_refused(tmp_path, change, match):
    arrays = prepare(DataConfig(image_size=16), seed=0)
    change(arrays)
    with pytest.raises(DataError, match=match):
        write_npz(arrays, tmp_path / "d.npz")
    assert not list(tmp_path.iterdir())  # nothing partial left behind


def test_truncated_npz_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    write_npz(prepare(DataConfig(image_size=16), seed=0), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable .npz"):
        read_npz(path)


def test_missing_dataset_says_to_fetch(tmp_path):
    with pytest.raises(DataError, match="run the fetch stage"):
        load_splits(DataConfig(root=str(tmp_path)))


def test_a_download_without_network_fails_with_what_to_do(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    cfg = DataConfig(dataset="cifar10", root=str(tmp_path))
    with pytest.raises(DataError, match="could not download cifar10.*npz") as err:
        prepare(cfg)
    assert "\n" not in str(err.value)
    assert not dataset_file(cfg).exists()
