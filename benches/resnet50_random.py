"""Writes a ResNet-50 with realistic weights for timing convc's passes (issue 15).

The onnx package's light ResNet-50 (onnx/backend/test/data/light/light_resnet50.onnx) has the
real architecture but constant weights (ConstantOfShape nodes: every conv is rank 1, so the
passes take shortcuts real models never allow). This script replaces every ConstantOfShape by a
seeded random initializer: conv and Gemm weights He-initialised (normal, std sqrt(2 / fan_in):
full rank, as trained weights are), batchnorm scales near 1, shifts and means near 0, variances
in [0.5, 1.5].

    python benches/resnet50_random.py OUT.onnx

Needs numpy and onnx (no torch). The model is about 100 MB: write it outside the repository.
"""

import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def light_resnet50_path():
    here = os.path.dirname(onnx.__file__)
    return os.path.join(here, "backend", "test", "data", "light", "light_resnet50.onnx")


def random_value(name, shape, rng):
    """A seeded random tensor for the parameter `name` of shape `shape`."""
    if name.endswith("_w_0"):
        fan_in = int(np.prod(shape[1:]))
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    if name.endswith("_bn_s_0"):
        return rng.uniform(0.8, 1.2, size=shape)
    if name.endswith("_bn_riv_0"):
        return rng.uniform(0.5, 1.5, size=shape)
    # Shifts, running means, the classifier's bias.
    return rng.normal(0.0, 0.05, size=shape)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python benches/resnet50_random.py OUT.onnx")
    model = onnx.load(light_resnet50_path())
    rng = np.random.default_rng(50)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape":
            kept.append(node)
            continue
        shape = [int(d) for d in inits[node.input[0]]]
        value = random_value(node.output[0], shape, rng).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(kept)
    # The shapes the ConstantOfShape nodes read are no longer used.
    used = {i for n in kept for i in n.input}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for i in unused:
        model.graph.initializer.remove(i)
    for i in [i for i in model.graph.input if i.name not in used]:
        model.graph.input.remove(i)
    # From IR version 4 an initializer need not be a graph input.
    model.ir_version = max(model.ir_version, 4)
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[1])


if __name__ == "__main__":
    main()
