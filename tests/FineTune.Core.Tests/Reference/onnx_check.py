"""ONNX's own checker (Debian's python3-onnx) on an exported graph: the spec, with full shape inference.

Prints the output's inferred shape, e.g. "logits batch 3".
"""
import sys

import onnx

model = onnx.load(sys.argv[1])
onnx.checker.check_model(model, full_check=True)
inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
output = inferred.graph.output[0]
dims = [d.dim_param or str(d.dim_value) for d in output.type.tensor_type.shape.dim]
print(output.name, *dims)
