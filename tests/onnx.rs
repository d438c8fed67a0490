//! ONNX models through the binary: every supported op against ONNX Runtime's outputs
//! (`tests/fixtures/onnx/make_onnx_fixtures.py`), the benchmark networks' ONNX twins against
//! their `.conv` specs, the real-architecture models of the onnx wheel, and the errors.

mod common;

use std::path::{Path, PathBuf};

use common::{
    BENCH_NAMES, fail_stderr, ok_stdout, read_npy, rel_err_same_numel, rel_err_same_shape, root,
    write_npy,
};
use convc_tensor::Tensor;

/// Runs `model` on `input` with `backend`, returning the first output.
/// Runs `model` on `input`. The JIT runs every 3x3 stride-1 conv as Winograd: tests here
/// compare runs of two processes (a model and its import) to 1e-6 or exactly, and `auto`
/// chooses per layer from transform costs measured on the host at each run, which a loaded
/// machine can tip (vgg_head's twins differed by 8e-6 with other processes running).
fn run(model: &Path, input: &Path, backend: &str, dir: &Path) -> Tensor {
    let out = dir.join("out.npy");
    let (m, i, o) = (
        model.to_str().unwrap(),
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let mut args = vec!["run", m, i, "-o", o, "--backend", backend];
    if backend == "jit" {
        args.extend(["--conv-algo", "winograd"]);
    }
    ok_stdout(&args);
    read_npy(&out)
}

#[test]
fn every_op_fixture_matches_onnxruntime_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let ops = root().join("tests/fixtures/onnx/ops");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&ops)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    assert!(models.len() >= 20, "the fixtures are there");
    for m in models {
        let stem = m.file_stem().unwrap().to_str().unwrap();
        let want = read_npy(&ops.join(format!("{stem}.expected.npy")));
        for backend in ["interp", "jit"] {
            let got = run(
                &m,
                &ops.join(format!("{stem}.input.npy")),
                backend,
                dir.path(),
            );
            let e = rel_err_same_numel(&got, &want);
            assert!(e <= 1e-5, "{stem} ({backend}): relative error {e:.2e}");
        }
    }
}

#[test]
fn bench_twins_run_to_the_numbers_of_their_conv_specs() {
    let dir = tempfile::tempdir().unwrap();
    for name in BENCH_NAMES {
        let spec = root().join(format!("specs/bench/{name}.conv"));
        let g = convc_ir::compile(
            &std::fs::read_to_string(&spec).unwrap(),
            &root().join("specs/bench"),
        )
        .unwrap();
        let s = &g.node(g.inputs[0]).shape;
        let (h, w) = s.hw().unwrap();
        let n = s.c * h * w;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 + 13) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let input = dir.path().join("x.npy");
        write_npy(&input, vec![1, s.c, h, w], x);
        let onnx = root().join(format!("tests/fixtures/bench/onnx/{name}.onnx"));
        let a = run(&onnx, &input, "jit", dir.path());
        let b = run(&spec, &input, "jit", dir.path());
        assert_eq!(a.shape(), b.shape(), "{name}");
        let e = rel_err_same_shape(&a, &b);
        assert!(e <= 1e-6, "{name}: relative error {e:.2e}");
    }
}

/// The input of the light models' fixtures: element i of `[1, 3, 224, 224]` is
/// `((i*7919 + 13) % 1000) / 1000 - 0.5`.
fn light_input(dir: &Path) -> PathBuf {
    let n = 3 * 224 * 224;
    let x: Vec<f32> = (0..n as u64)
        .map(|i| (((i * 7919 + 13) % 1000) as f64 / 1000.0 - 0.5) as f32)
        .collect();
    let p = dir.join("light.npy");
    write_npy(&p, vec![1, 3, 224, 224], x);
    p
}

/// Every light model of the onnx wheel, with the backends it is checked on (the biggest only
/// on the JIT, to keep the test short). Their weights are constants (ConstantOfShape), so
/// their logits are all equal and the softmax uniform: these check import and plumbing at
/// full size; the op fixtures check the numbers.
const LIGHT: &[(&str, &[&str])] = &[
    ("densenet121", &["interp", "jit"]),
    ("inception_v1", &["interp", "jit"]),
    ("inception_v2", &["interp", "jit"]),
    ("shufflenet", &["interp", "jit"]),
    ("squeezenet", &["interp", "jit"]),
    ("bvlc_alexnet", &["jit"]),
    ("resnet50", &["jit"]),
    ("vgg19", &["jit"]),
    ("zfnet512", &["jit"]),
];

#[test]
fn every_light_model_of_the_onnx_wheel_matches_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let light = root().join("tests/fixtures/onnx/light");
    let input = light_input(dir.path());
    for (name, backends) in LIGHT {
        let m = light.join(format!("{name}.onnx"));
        let want = read_npy(&light.join(format!("{name}.expected.npy")));
        for backend in *backends {
            let got = run(&m, &input, backend, dir.path());
            let e = rel_err_same_numel(&got, &want);
            assert!(e <= 1e-4, "{name} ({backend}): relative error {e:.2e}");
        }
    }
}

#[test]
fn every_unsupported_op_is_listed_at_once() {
    assert_eq!(
        fail_stderr(
            &["check", "tests/fixtures/onnx/bad/unsupported_ops.onnx"],
            1
        ),
        "tests/fixtures/onnx/bad/unsupported_ops.onnx: error: the model uses 2 operator type(s) convc does not support (opset 17):\n  \
         Softplus: 2 node(s): node `/sp/Softplus`, node `/sp2/Softplus`\n  \
         Softsign: 1 node(s): node `/ss/Softsign`\n"
    );
}

#[test]
fn refused_settings_of_supported_ops_name_the_node() {
    assert_eq!(
        fail_stderr(&["check", "tests/fixtures/onnx/bad/resize_cubic.onnx"], 1),
        "tests/fixtures/onnx/bad/resize_cubic.onnx: error: node `/up/Resize` (Resize, opset 17): mode `cubic` is not supported (nearest, linear)\n"
    );
    assert_eq!(
        fail_stderr(
            &["run", "tests/fixtures/onnx/bad/pad_negative.onnx", "x.npy"],
            1
        ),
        "tests/fixtures/onnx/bad/pad_negative.onnx: error: node `/crop/Pad` (Pad, opset 17): pad -1 is not from 0 to 65536 (negative pads, which crop, are not supported)\n"
    );
}

#[test]
fn div_of_computed_tensors_and_batch_arithmetic_name_the_node() {
    assert_eq!(
        fail_stderr(&["check", "tests/fixtures/onnx/bad/div_computed.onnx"], 1),
        "tests/fixtures/onnx/bad/div_computed.onnx: error: node `/div/Div` (Div, opset 17): Div of two computed tensors is not supported (only division by a constant)\n"
    );
    assert_eq!(
        fail_stderr(&["check", "tests/fixtures/onnx/bad/batch_arith.onnx"], 1),
        "tests/fixtures/onnx/bad/batch_arith.onnx: error: node `/twice/Mul` (Mul, opset 17): Mul needs the batch size, which convc leaves open (any batch runs): only a Reshape's first dimension may be the batch size\n"
    );
}

/// The shape arithmetic of torch's `view(x.size(0), -1)` leaves no layer behind: the
/// imported graph is the conv and the fully connected layer only.
#[test]
fn folded_shape_arithmetic_leaves_no_layer() {
    for opset in [9, 13] {
        let m = format!("tests/fixtures/onnx/ops/shape_gather_concat_reshape_opset{opset}.onnx");
        let out = ok_stdout(&["check", &m]);
        assert!(out.contains("1 input, 2 layers, 1 output"), "{out}");
    }
}

#[test]
fn external_data_may_not_leave_the_model_folder() {
    assert_eq!(
        fail_stderr(
            &[
                "run",
                "tests/fixtures/onnx/bad/external_escape.onnx",
                "x.npy"
            ],
            1
        ),
        "tests/fixtures/onnx/bad/external_escape.onnx: error: external data location `../secret.bin` \
         must be a relative path inside the model's folder (no `..`, no absolute path)\n"
    );
}

#[test]
fn external_data_beside_the_model_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let bad = root().join("tests/fixtures/onnx/bad");
    let got = run(
        &bad.join("external_ok.onnx"),
        &bad.join("external_ok.input.npy"),
        "interp",
        dir.path(),
    );
    let e = rel_err_same_numel(&got, &read_npy(&bad.join("external_ok.expected.npy")));
    assert!(e <= 1e-6, "relative error {e:.2e}");
}

#[test]
fn a_truncated_model_is_an_error() {
    let err = fail_stderr(&["dump", "tests/fixtures/onnx/bad/truncated.onnx"], 1);
    assert!(
        err.starts_with("tests/fixtures/onnx/bad/truncated.onnx: error: the file is not a valid ONNX model (its protobuf cannot be decoded: "),
        "{err}"
    );
}

#[test]
fn a_model_is_recognised_by_its_content_too() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.bin");
    std::fs::copy(root().join("tests/fixtures/bench/onnx/sobel.onnx"), &p).unwrap();
    let out = ok_stdout(&["check", p.to_str().unwrap()]);
    assert!(out.contains("1 input, 1 layer, 1 output"), "{out}");
}

#[test]
fn check_dump_and_explain_read_onnx() {
    let m = "tests/fixtures/bench/onnx/lowrank_conv.onnx";
    insta::assert_snapshot!("onnx_check_lowrank_conv", ok_stdout(&["check", m]));
    let dump = ok_stdout(&["dump", m]);
    assert!(dump.contains("depthwise"), "{dump}");
    let explain = ok_stdout(&["explain", m]);
    assert!(explain.contains("conv1"), "{explain}");
}

/// `convc import` writes a spec and weights that run to the same numbers as the model.
#[test]
fn import_round_trips_to_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let ops = root().join("tests/fixtures/onnx/ops");
    let mut cases: Vec<(PathBuf, PathBuf)> = [
        "add_sum_concat",
        "channel_affine_mul_add_sub_div",
        "clip_attributes_opset10",
        "conv_auto_pad_same_lower",
        "global_avgpool_flatten_gemm",
        "leaky_sigmoid_tanh",
        "maxpool_pads_ceil",
        "reshape_gemm_matmul_dropout",
        "softmax_channels_per_pixel",
        "softmax_classifier_head_opset11",
        "lrn_sizes_5_and_3",
        "channel_shuffle_groups_2",
        "hardsigmoid_hardswish",
        "prelu_per_channel_and_scalar",
        "mul_squeeze_excitation",
        "global_maxpool_flatten_gemm",
        "pad_constant_reflect_edge",
        "pad_attributes_opset10",
        "resize_nearest_bilinear_opset17",
        "resize_half_pixel_nearest_upsample_opset9",
        "conv_transpose_stride_pads_groups",
        "conv_transpose_output_shape_same",
        "add_sub_broadcast_computed",
        "shape_slice_reduceprod_cast_range",
        "slice_split_channels",
        "shufflenet_v2_unit_opset11",
        "reducemean_squeeze_heads",
    ]
    .iter()
    .map(|s| {
        (
            ops.join(format!("{s}.onnx")),
            ops.join(format!("{s}.input.npy")),
        )
    })
    .collect();
    cases.push((
        root().join("tests/fixtures/onnx/light/densenet121.onnx"),
        light_input(dir.path()),
    ));
    for (model, input) in cases {
        let spec = dir.path().join("net.conv");
        ok_stdout(&[
            "import",
            model.to_str().unwrap(),
            "-o",
            spec.to_str().unwrap(),
        ]);
        assert!(dir.path().join("net.safetensors").is_file());
        let text = std::fs::read_to_string(&spec).unwrap();
        assert!(
            text.contains("file(\"net.safetensors\"") || !text.contains("file("),
            "{text}"
        );
        for backend in ["interp", "jit"] {
            let a = run(&model, &input, backend, dir.path());
            let b = run(&spec, &input, backend, dir.path());
            assert_eq!(a.data(), b.data(), "{} ({backend})", model.display());
        }
    }
}

#[test]
fn import_writes_a_readable_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("m.conv");
    ok_stdout(&[
        "import",
        "tests/fixtures/onnx/ops/conv_depthwise_bn_relu.onnx",
        "-o",
        spec.to_str().unwrap(),
    ]);
    insta::assert_snapshot!(
        "onnx_import_conv_depthwise_bn_relu",
        std::fs::read_to_string(&spec).unwrap()
    );
    fail_stderr(
        &[
            "import",
            "tests/fixtures/onnx/ops/add_sum_concat.onnx",
            "-o",
            "x.txt",
        ],
        2,
    );
}
