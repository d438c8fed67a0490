"""`import convc`: compile, run, batches, errors, threads, and agreement with the CLI."""

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import convc

from conftest import REPO

CLASSIC = "specs/examples/classic_standard.conv"
BLUR = "specs/examples/gaussian_blur.conv"
SCENE = "specs/images/scene128.png"


def rand(*shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_run_matches_cli(cli, tmp_path):
    net = convc.compile(CLASSIC, threads=1)
    y = net(convc.read_image(SCENE))
    cli("run", CLASSIC, SCENE, "-o", tmp_path / "y.npy")
    expected = np.load(tmp_path / "y.npy")
    assert y.shape == expected.shape == (8, 128, 128)
    np.testing.assert_array_equal(y, expected)


def test_npy_input_and_unoptimised_run_match_cli(cli, tmp_path):
    x = rand(3, 40, 56)
    np.save(tmp_path / "x.npy", x)
    for opt, flags in [(True, []), (False, ["--no-opt"])]:
        y = convc.compile(BLUR, threads=2, opt=opt)(x)
        cli("run", BLUR, tmp_path / "x.npy", "-o", tmp_path / "y.npy", *flags)
        np.testing.assert_array_equal(y, np.load(tmp_path / "y.npy"))


def test_read_image_is_the_cli_conversion():
    x = convc.read_image(SCENE)
    assert x.dtype == np.float32 and x.shape == (3, 128, 128)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5


def test_outputs_are_numpy_owned_and_fresh():
    net = convc.compile(CLASSIC, threads=1)
    x = rand(3, 128, 128)
    a, b = net(x), net(x)
    assert a.flags.writeable and a.flags.c_contiguous and a.ctypes.data % 64 == 0
    root = a
    while root.base is not None:
        root = root.base
    assert isinstance(root, np.ndarray) and root.flags.owndata
    assert not np.shares_memory(a, b) and not np.shares_memory(a, x)
    a[:] = 0
    np.testing.assert_array_equal(b, net(x))


def test_inputs_outputs_threads_report():
    net = convc.compile(BLUR, threads=3)
    assert net.inputs == [("image", (3, "H", "W"))]
    assert net.outputs == [("blurred", (3, "H", "W"))]
    assert net.threads == 3
    assert any("decompose" in r for r in net.report)
    assert convc.compile(BLUR, opt=False).report == []
    fixed = convc.compile(CLASSIC)
    assert fixed.inputs == [("image", (3, 128, 128))]
    assert fixed.outputs == [("features", (8, 128, 128))]
    assert "classic_standard.conv" in repr(fixed)


def test_batch_equals_images_one_by_one():
    net = convc.compile(CLASSIC, threads=2)
    xs = rand(5, 3, 128, 128)
    ys = net(xs)
    assert ys.shape == (5, 8, 128, 128)
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(net(x), y)


def test_symbolic_sizes_compile_per_size():
    net = convc.compile(BLUR, threads=1)
    for h, w in [(16, 16), (33, 20), (16, 16)]:
        x = rand(3, h, w, seed=h)
        y = net(x)
        assert y.shape == (3, h, w)
        # A Gaussian blur keeps the mean of the interior.
        assert abs(float(y[:, 5:-5, 5:-5].mean() - x[:, 5:-5, 5:-5].mean())) < 0.05


def test_converts_other_dtypes_and_layouts():
    net = convc.compile(CLASSIC, threads=1)
    x = rand(3, 128, 128)
    want = net(x)
    np.testing.assert_array_equal(net(x.astype(np.float64)), want)
    fortran = np.asfortranarray(x)
    assert not fortran.flags.c_contiguous
    np.testing.assert_array_equal(net(fortran), want)
    ro = x.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(net(ro), want)
    np.testing.assert_array_equal(net(x.tolist()), want)


def test_wrong_arrays_raise_convc_error():
    net = convc.compile(CLASSIC, threads=1)
    cases = [
        ((rand(4, 128, 128),), "4 channels, but input `image` is [3,128,128]"),
        ((rand(3, 64, 128),), "height 64, but input `image` is [3,128,128]"),
        ((rand(128, 128),), "give an array [C, H, W] or [N, C, H, W]"),
        ((rand(0, 3, 128, 128),), "is empty"),
        ((rand(3, 128, 128), rand(3, 128, 128)), "the network has 1 input(s)"),
    ]
    for args, words in cases:
        with pytest.raises(convc.ConvcError) as e:
            net(*args)
        assert words in str(e.value)
        assert str(e.value).startswith("error: ")


def test_bad_spec_message_is_the_clis(cli, tmp_path):
    assert issubclass(convc.ConvcError, ValueError)
    bad = tmp_path / "bad.conv"
    bad.write_text("input image: [3, 8, 8]\nx = conv(image, out=4, kernel=3x3, pad=sideways)\noutput x\n")
    missing = tmp_path / "missing.conv"
    undefined = tmp_path / "undefined.conv"
    undefined.write_text("input image: [3, 8, 8]\noutput nothing\n")
    for path in [bad, missing, undefined]:
        p = cli("check", path, check=False)
        assert p.returncode == 1
        for call in (convc.compile, convc.check):
            with pytest.raises(convc.ConvcError) as e:
                call(str(path))
            assert str(e.value) == p.stderr.rstrip("\n")
    # Located: FILE:LINE:COL, the source line and a caret.
    with pytest.raises(convc.ConvcError) as e:
        convc.compile(str(bad))
    assert re.search(r"bad\.conv:2:\d+: error: ", str(e.value)) and "^" in str(e.value)


def test_bad_options_raise_convc_error(cli):
    p = cli("run", CLASSIC, SCENE, "--tolerance", "-1", check=False)
    with pytest.raises(convc.ConvcError) as e:
        convc.compile(CLASSIC, tolerance=-1.0)
    assert str(e.value) == p.stderr.rstrip("\n")
    with pytest.raises(convc.ConvcError, match="thread count"):
        convc.compile(CLASSIC, threads=0)
    with pytest.raises(convc.ConvcError, match="not a dump format"):
        convc.compile(CLASSIC).dump("yaml")
    with pytest.raises(convc.ConvcError):
        convc.read_image("specs/examples/classic_standard.conv")


def test_check_explain_dump_match_cli(cli):
    assert convc.check(CLASSIC) == cli("check", CLASSIC).stdout
    net = convc.compile(BLUR)
    assert net.explain() == cli("explain", BLUR).stdout
    assert net.dump() == cli("dump", BLUR).stdout
    assert net.dump("dot") == cli("dump", BLUR, "--format", "dot").stdout
    assert net.dump("json") == cli("dump", BLUR, "--format", "json").stdout
    # The plan's split into work items follows tile timings measured per process, so only
    # its first line (steps, values) is compared.
    plan = convc.compile(CLASSIC, threads=1).dump("plan")
    cli_plan = cli("dump", CLASSIC, "--format", "plan").stdout
    assert plan.splitlines()[0] == cli_plan.splitlines()[0] and "features" in plan
    with pytest.raises(convc.ConvcError, match="symbolic"):
        net.dump("plan")


def test_many_python_threads_share_one_net():
    net = convc.compile(CLASSIC, threads=2)
    xs = [rand(2, 3, 128, 128, seed=i) for i in range(8)]
    want = [net(x) for x in xs]
    got = [None] * len(xs)
    errors = []

    def work(i):
        try:
            for _ in range(3):
                got[i] = net(xs[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_gil_is_released_while_running():
    net = convc.compile("specs/examples/resnet_block.conv", threads=1)
    x = rand(8, 3, 224, 224)
    t0 = time.perf_counter()
    net(x)
    call = time.perf_counter() - t0
    started = threading.Event()

    def work():
        started.set()
        net(x)

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    ticks = [time.perf_counter()]
    while t.is_alive():
        time.sleep(0.001)
        ticks.append(time.perf_counter())
    t.join()
    gap = max(np.diff(ticks)) if len(ticks) > 1 else call
    # Holding the GIL would stop this loop for the whole call.
    assert gap < 0.5 * call, (gap, call)


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs():
    code = readme_python_example()
    assert "convc.compile" in code
    exec(compile(code, "README.md", "exec"), {})


def test_onnx_model_runs_like_its_conv_twin(cli, tmp_path):
    onnx, conv = "../shared/bench/seed_3to8.onnx", "../shared/bench/seed_3to8.conv"
    if not (REPO / onnx).exists():
        pytest.skip("../shared/bench is not beside the repository")
    x = rand(2, 3, 128, 128)
    y = convc.compile(onnx, threads=1)(x)
    np.testing.assert_array_equal(y, convc.compile(conv, threads=1)(x))
    np.save(tmp_path / "x.npy", x)
    cli("run", onnx, tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    np.testing.assert_array_equal(y, np.load(tmp_path / "y.npy"))
