"""The Ray example (`examples/ray_batch.py`) in Ray's local mode gives the files of
`convc run MODEL DIR/ -o OUT/`."""

import importlib.util
import shutil

import numpy as np
import pytest

from conftest import REPO

ray = pytest.importorskip("ray")

MODEL = "specs/examples/classic_standard.conv"


def load_example():
    spec = importlib.util.spec_from_file_location("ray_batch", REPO / "examples" / "ray_batch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_example_matches_cli_folder_run(cli, tmp_path, local_ray):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(7)
    for i in range(6):
        np.save(images / f"img{i}.npy", rng.random((3, 128, 128), dtype=np.float32))
    shutil.copy(REPO / "specs" / "images" / "scene128.png", images / "scene.png")
    ray_out, cli_out = tmp_path / "ray", tmp_path / "cli"
    ray_out.mkdir()
    cli_out.mkdir()

    n, secs = load_example().run(MODEL, images, ray_out, workers=2, threads=1, batch_size=3)
    cli("run", MODEL, f"{images}/", "-o", cli_out)

    assert n == 7 and secs > 0
    names = sorted(p.name for p in cli_out.iterdir())
    assert names == sorted(p.name for p in ray_out.iterdir())
    assert len(names) == 7
    for name in names:
        a, b = np.load(ray_out / name), np.load(cli_out / name)
        assert a.shape == (8, 128, 128)
        np.testing.assert_array_equal(a, b)
