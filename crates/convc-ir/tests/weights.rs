//! Weight sources at the IR level: literals (and the depthwise broadcast), built-in filters,
//! random initialisers, npy and safetensors files relative to the spec.

use std::path::Path;

use convc_ir::{Graph, Op, Source};

fn graph_in(src: &str, dir: &Path) -> Graph {
    match convc_ir::compile(src, dir) {
        Ok(g) => g,
        Err(d) => panic!("{}", convc_lang::render("t.conv", src, &d)),
    }
}

fn conv_weights(g: &Graph, name: &str) -> (Vec<usize>, Vec<f32>, Option<Vec<f32>>, Source) {
    let Op::Conv(c) = &g.node(g.find(name).unwrap()).op else {
        panic!("{name} is not a conv")
    };
    (
        c.weight.data.shape().to_vec(),
        c.weight.data.data().to_vec(),
        c.bias.as_ref().map(|b| b.data.data().to_vec()),
        c.weight.source.clone(),
    )
}

#[test]
fn literal_weights_and_bias() {
    let src = "input x: [2, 4, 4]\ny = conv(x, out=1, kernel=1x2, weights=[[[[1, 2]], [[3, -4.5]]]], bias=[0.25])\noutput y\n";
    let g = graph_in(src, Path::new("."));
    let (shape, w, b, s) = conv_weights(&g, "y");
    assert_eq!(shape, [1, 2, 1, 2]);
    assert_eq!(w, [1.0, 2.0, 3.0, -4.5]);
    assert_eq!(b, Some(vec![0.25]));
    assert_eq!(s, Source::Literal);
}

#[test]
fn depthwise_2d_literal_is_broadcast() {
    let src = "input x: [3, 4, 4]\ny = depthwise(x, kernel=2x2, multiplier=2, weights=[[1, 2], [3, 4]])\noutput y\n";
    let g = graph_in(src, Path::new("."));
    let (shape, w, _, _) = conv_weights(&g, "y");
    assert_eq!(shape, [6, 1, 2, 2]);
    assert_eq!(w, [1.0, 2.0, 3.0, 4.0].repeat(6));
}

#[test]
fn ragged_literal_is_an_error() {
    let src =
        "input x: [1, 4, 4]\ny = conv(x, out=1, kernel=2, weights=[[[[1, 2], [3]]]])\noutput y\n";
    let d = convc_ir::compile(src, Path::new(".")).unwrap_err();
    assert!(
        d.message
            .contains("this list has 1 elements but the ones before it have 2"),
        "{}",
        d.message
    );
}

#[test]
fn builtin_filters() {
    let src = "input x: [2, 8, 8]\ng = depthwise(x, kernel=3x5, weights=gaussian(sigma=1.5))\nb = depthwise(x, kernel=2, weights=box)\n\
               s = depthwise(x, weights=sobel_x)\nt = depthwise(x, weights=sobel_y)\nl = depthwise(x, weights=laplacian)\n\
               one = conv(l, out=1, groups=1, kernel=3x3, weights=[[[[0,0,0],[0,1,0],[0,0,0]], [[0,0,0],[0,0,0],[0,0,0]]]])\n\
               c = conv(one, out=1, weights=sobel_x)\noutput g, b, s, t, l, c\n";
    let g = graph_in(src, Path::new("."));
    let (shape, w, _, src_) = conv_weights(&g, "g");
    assert_eq!(shape, [2, 1, 3, 5]);
    assert_eq!(src_, Source::Builtin("gaussian(sigma=1.5)".into()));
    // The contract's formula, centre (1, 2), normalised to sum 1.
    let mut want = Vec::new();
    for i in 0..3 {
        for j in 0..5 {
            let (di, dj) = (i as f64 - 1.0, j as f64 - 2.0);
            want.push((-(di * di + dj * dj) / (2.0 * 1.5 * 1.5)).exp());
        }
    }
    let sum: f64 = want.iter().sum();
    for (k, (a, b)) in w[..15].iter().zip(&want).enumerate() {
        assert!(
            (*a as f64 - b / sum).abs() < 1e-7,
            "gaussian[{k}] {a} vs {}",
            b / sum
        );
    }
    assert_eq!(&w[..15], &w[15..]);
    assert_eq!(conv_weights(&g, "b").1, vec![0.25; 8]);
    assert_eq!(
        &conv_weights(&g, "s").1[..9],
        [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0]
    );
    assert_eq!(
        &conv_weights(&g, "t").1[..9],
        [-1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0]
    );
    assert_eq!(
        &conv_weights(&g, "l").1[..9],
        [0.0, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0]
    );
    assert_eq!(
        conv_weights(&g, "c").1,
        [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0]
    );
}

#[test]
fn random_is_deterministic_and_he_uniform() {
    let src = "input x: [4, 8, 8]\na = conv(x, out=16, weights=random(seed=7), bias=random(seed=8))\nb = conv(x, out=16, weights=random(seed=7))\nc = conv(x, out=16)\noutput a, b, c\n";
    let g = graph_in(src, Path::new("."));
    let (_, wa, ba, sa) = conv_weights(&g, "a");
    let (_, wb, _, _) = conv_weights(&g, "b");
    let (_, wc, _, sc) = conv_weights(&g, "c");
    assert_eq!(wa, wb);
    assert_ne!(wa, wc);
    assert_eq!(
        sa,
        Source::Random {
            seed: 7,
            implicit: false
        }
    );
    assert_eq!(
        sc,
        Source::Random {
            seed: convc_tensor::random::seed_from_name("c"),
            implicit: true
        }
    );
    let bound = (6.0f64 / 36.0).sqrt() as f32;
    assert!(wa.iter().all(|v| v.abs() <= bound));
    assert!(wa.iter().any(|v| v.abs() > bound * 0.9));
    let bb = 1.0 / 6.0f32;
    assert!(ba.unwrap().iter().all(|v| v.abs() <= bb));
    // Same spec, same weights: compiled twice.
    let g2 = graph_in(src, Path::new("."));
    assert_eq!(conv_weights(&g2, "c").1, wc);
}

#[test]
fn npy_and_safetensors_files_relative_to_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("w")).unwrap();
    let t = convc_tensor::Tensor::new(vec![2, 1, 1, 1], vec![1.5, -2.0]).unwrap();
    std::fs::write(dir.path().join("w/k.npy"), convc_tensor::npy::write(&t)).unwrap();
    // A safetensors file with an F32 tensor "b" of shape [2].
    let header = br#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&0.5f32.to_le_bytes());
    st.extend_from_slice(&(-0.5f32).to_le_bytes());
    std::fs::write(dir.path().join("w/m.safetensors"), &st).unwrap();
    let src = "input x: [1, 4, 4]\ny = conv(x, out=2, kernel=1, weights=file(\"w/k.npy\"), bias=file(\"w/m.safetensors\", \"b\"))\noutput y\n";
    let g = graph_in(src, dir.path());
    let (_, w, b, s) = conv_weights(&g, "y");
    assert_eq!(w, [1.5, -2.0]);
    assert_eq!(b, Some(vec![0.5, -0.5]));
    assert_eq!(
        s,
        Source::File {
            path: "w/k.npy".into(),
            name: None
        }
    );
    let src = "input x: [1, 4, 4]\ny = conv(x, out=2, kernel=1, bias=file(\"w/m.safetensors\", \"nope\"))\noutput y\n";
    let d = convc_ir::compile(src, dir.path()).unwrap_err();
    assert!(
        d.message.starts_with("layer `y`: `w/m.safetensors`: "),
        "{}",
        d.message
    );
    assert!(d.message.contains("nope"), "{}", d.message);
    let src = "input x: [1, 4, 4]\ny = conv(x, out=2, kernel=1, bias=file(\"w/m.safetensors\"))\noutput y\n";
    let d = convc_ir::compile(src, dir.path()).unwrap_err();
    assert!(d.message.contains("name the tensor"), "{}", d.message);
}

#[test]
fn weights_are_shared_not_copied() {
    let g = graph_in(
        "input x: [2, 4, 4]\ny = conv(x, out=2)\noutput y\n",
        Path::new("."),
    );
    let g2 = g.clone();
    let Op::Conv(a) = &g.node(g.find("y").unwrap()).op else {
        panic!()
    };
    let Op::Conv(b) = &g2.node(g2.find("y").unwrap()).op else {
        panic!()
    };
    assert!(std::sync::Arc::ptr_eq(&a.weight.data, &b.weight.data));
}
