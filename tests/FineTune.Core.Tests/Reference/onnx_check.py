"""ONNX's own checker (Debian's python3-onnx) on an exported graph: the spec, with full shape inference.

Prints the output's inferred shape, e.g. "logits batch 3".
"""
import sys

import onnx

path = sys.argv[1]
# By path: a graph whose weights are in an external data file (the largest builders: 2.5 GB) is past protobuf's 2 GB
# in memory; the checker then reads the data file's tensors where the graph points.
onnx.checker.check_model(path, full_check=True)
model = onnx.load(path, load_external_data=False)
inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
output = inferred.graph.output[0]
dims = [d.dim_param or str(d.dim_value) for d in output.type.tensor_type.shape.dim]
print(output.name, *dims)
