using FineTune.Core.Models;
using TorchSharp.Modules;
using static FineTune.Core.Export.OnnxGraphBuilder;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Core.Export;

/// <summary>
/// A module's forward written as ONNX operators, the trace computed alongside. TorchSharp's generic layers are
/// written here; a family's own module types by the forwards its file declares
/// (<see cref="ModelArchitecture.OnnxForwards"/>), which compose this class's public operations.
/// </summary>
/// <param name="forwards">the model's family's forwards by type name</param>
internal sealed class OnnxModuleWriter(OnnxGraphBuilder graph, IReadOnlyDictionary<string, OnnxForward> forwards)
{
    private readonly Dictionary<string, string> _constants = [];
    private readonly IReadOnlyDictionary<string, OnnxForward> _forwards = forwards;

    public OnnxGraphBuilder Graph => graph;

    public OnnxValue Write(nn.Module module, string path, OnnxValue x)
    {
        switch (module)
        {
            case Sequential sequential:
                foreach (var (name, child) in sequential.named_children())
                    x = Write(child, Join(path, name), x);
                return x;
            case Conv2d conv: return Conv(conv, path, x);
            case BatchNorm2d norm: return BatchNorm(norm, path, x);
            case Linear linear: return Linear(linear, path, x);
            case LayerNorm norm: return LayerNorm(path, x, norm.weight!, norm.bias!, norm.eps, norm);
            case GELU: return Gelu(path, x);
            case SiLU: return Silu(path, x);
            case ReLU: return Relu(path, x);
            case ReLU6: return graph.Node("Clip", path, [x.Name, Scalar(0), Scalar(6)], F.relu6(x.Trace));
            case Hardswish: return graph.Node("HardSwish", path, [x.Name], F.hardswish(x.Trace));
            case Hardsigmoid:
                return graph.Node("HardSigmoid", path, [x.Name], F.hardsigmoid(x.Trace), Float("alpha", 1f / 6), Float("beta", 0.5f));
            case Sigmoid: return Logistic(path, x);
            case MaxPool2d pool:
                return MaxPool(path, x, pool.kernel_size, pool.stride ?? pool.kernel_size, pool.padding ?? [0, 0], pool.ceil_mode, pool.dilation ?? [1, 1], pool);
            case AvgPool2d pool when pool.divisor_override is null:
                return AvgPool(path, x, pool.kernel_size, pool.stride ?? pool.kernel_size, pool.padding ?? [0, 0], pool.ceil_mode, pool.count_include_pad, pool);
            case AdaptiveAvgPool2d pool: return AdaptiveAvgPool(path, x, pool.output_size);
            case Flatten flatten when flatten.start_dim == 1 && flatten.end_dim == -1: return Flatten(path, x);
            // Inference: dropout passes its input through, and so does stochastic depth.
            case Dropout or Identity or StochasticDepth: return x;
            // torchvision.ops' block, shared by several families (MobileNetV3; EfficientNet's has SiLU inside).
            case TorchSharp.torchvision.SqueezeExcitation:
                return Mul(path, Children(module, path, x, "avgpool", "fc1", "activation", "fc2", "scale_activation"), x);
            // torchvision.ops' blocks as this project writes them, shared by the new families.
            case Models.SqueezeExcitation:
                return Mul(path, Children(module, path, x, "avgpool", "fc1", "activation", "fc2", "scale_activation"), x);
            case LayerNorm2d norm:
                var channelsLast = Transpose(path, x, 0, 2, 3, 1);
                var normalised = LayerNorm(path, channelsLast, Parameter(norm, "weight"), Parameter(norm, "bias"), norm.Eps, null);
                return Transpose(path, normalised, 0, 3, 1, 2);
            case Models.Permute permute: return Transpose(path, x, [.. permute.Dims]);
            case TransformerParts.Permute: return Transpose(path, x, PermutationOf(module, x.Trace));
        }
        return _forwards.TryGetValue(module.GetType().Name, out var forward)
            ? forward(this, module, path, x)
            : throw new NotSupportedException($"ONNX export does not know {module.GetType().Name} at '{path}'");
    }

    public OnnxValue Child(nn.Module parent, string path, string name, OnnxValue x)
    {
        var child = parent.named_children().FirstOrDefault(c => c.name == name).module
            ?? throw new NotSupportedException($"ONNX export expected '{name}' in {parent.GetType().Name} at '{path}'");
        return Write(child, Join(path, name), x);
    }

    /// <summary>The named children applied one after the other.</summary>
    public OnnxValue Children(nn.Module parent, string path, OnnxValue x, params string[] names)
    {
        foreach (var name in names) x = Child(parent, path, name, x);
        return x;
    }

    public OnnxValue Conv(Conv2d conv, string path, OnnxValue x)
    {
        if (conv.padding is not { } padding || conv.padding_mode != TorchSharp.PaddingModes.Zeros)
            throw new NotSupportedException($"ONNX export writes convolutions with explicit zero padding only ('{path}')");
        var inputs = new List<string> { x.Name, graph.Initializer(path + ".weight", conv.weight!) };
        if (conv.bias is { } bias) inputs.Add(graph.Initializer(path + ".bias", bias));
        return graph.Node("Conv", path, inputs, conv.call(x.Trace),
            Ints("kernel_shape", conv.kernel_size), Ints("strides", conv.stride), Ints("pads", [padding[0], padding[1], padding[0], padding[1]]),
            Ints("dilations", conv.dilation), Int("group", conv.groups));
    }

    public OnnxValue BatchNorm(BatchNorm2d norm, string path, OnnxValue x)
    {
        if (norm.running_mean is null || norm.running_var is null || norm.bias is null)
            throw new NotSupportedException($"ONNX export needs running statistics and affine parameters at '{path}'");
        string[] inputs = [x.Name, graph.Initializer(path + ".weight", norm.weight), graph.Initializer(path + ".bias", norm.bias),
            graph.Initializer(path + ".running_mean", norm.running_mean), graph.Initializer(path + ".running_var", norm.running_var)];
        return graph.Node("BatchNormalization", path, inputs, norm.call(x.Trace), Float("epsilon", (float)norm.eps));
    }

    public OnnxValue Gemm(Linear linear, string path, OnnxValue x)
    {
        var inputs = new List<string> { x.Name, graph.Initializer(path + ".weight", linear.weight!) };
        if (linear.bias is { } bias) inputs.Add(graph.Initializer(path + ".bias", bias));
        return graph.Node("Gemm", path, inputs, linear.call(x.Trace), Int("transB", 1));
    }

    /// <summary>Gemm where the input is a matrix; otherwise MatMul with the transposed weight and Add (Gemm is 2-D only).</summary>
    public OnnxValue Linear(Linear linear, string path, OnnxValue x)
    {
        if (x.Trace.dim() == 2) return Gemm(linear, path, x);
        using var transposed = linear.weight!.t();
        var product = graph.Node("MatMul", path, [x.Name, graph.Initializer(path + ".weight", transposed)], linear.call(x.Trace));
        return linear.bias is { } bias ? graph.Node("Add", path, [product.Name, graph.Initializer(path + ".bias", bias)], product.Trace) : product;
    }

    /// <summary>Layer norm over the last dimension (opset 17's LayerNormalization).</summary>
    public OnnxValue LayerNorm(string path, OnnxValue x, Tensor weight, Tensor bias, double eps, LayerNorm? module)
    {
        var trace = module?.call(x.Trace) ?? F.layer_norm(x.Trace, [weight.shape[0]], weight, bias, eps);
        return graph.Node("LayerNormalization", path, [x.Name, graph.Initializer(path + ".weight", weight), graph.Initializer(path + ".bias", bias)],
            trace, Int("axis", -1), Float("epsilon", (float)eps));
    }

    /// <summary>PyTorch's default, exact GELU: x·½·(1 + erf(x/√2)); opset 17 has no Gelu and the tanh form differs by 1e-3.</summary>
    public OnnxValue Gelu(string path, OnnxValue x)
    {
        var erf = graph.Node("Erf", path, [graph.Node("Mul", path, [x.Name, Scalar((float)(1 / Math.Sqrt(2)))], x.Trace).Name], x.Trace);
        var onePlus = graph.Node("Add", path, [erf.Name, Scalar(1)], x.Trace);
        var half = graph.Node("Mul", path, [x.Name, Scalar(0.5f)], x.Trace);
        return graph.Node("Mul", path, [half.Name, onePlus.Name], F.gelu(x.Trace));
    }

    /// <summary>x·sigmoid(x): opset 17 has no SiLU.</summary>
    public OnnxValue Silu(string path, OnnxValue x) =>
        graph.Node("Mul", path, [x.Name, Logistic(path, x).Name], F.silu(x.Trace));

    public OnnxValue Logistic(string path, OnnxValue x) => graph.Node("Sigmoid", path, [x.Name], x.Trace.sigmoid());

    public OnnxValue Transpose(string path, OnnxValue x, params long[] permutation) =>
        graph.Node("Transpose", path, [x.Name], x.Trace.permute(permutation), Ints("perm", permutation));

    /// <summary>Reshaped to <paramref name="shape"/>; the batch is written −1, so the graph takes any batch.</summary>
    public OnnxValue Reshape(string path, OnnxValue x, params long[] shape)
    {
        var trace = x.Trace.reshape(shape);
        long[] written = [-1, .. shape[1..]];
        return graph.Node("Reshape", path, [x.Name, Int64s(written)], trace);
    }

    public OnnxValue MatMul(string path, OnnxValue a, OnnxValue b) => graph.Node("MatMul", path, [a.Name, b.Name], a.Trace.matmul(b.Trace));

    public OnnxValue Softmax(string path, OnnxValue x) => graph.Node("Softmax", path, [x.Name], x.Trace.softmax(-1), Int("axis", -1));

    /// <summary>x times a constant scalar.</summary>
    public OnnxValue Scale(string path, OnnxValue x, float factor) => graph.Node("Mul", path, [x.Name, Scalar(factor)], x.Trace * factor);

    /// <summary>x plus a constant tensor (a bias, a position embedding), broadcast.</summary>
    public OnnxValue AddConstant(string path, OnnxValue x, string name, Tensor value) =>
        graph.Node("Add", path, [x.Name, graph.Initializer(name, value)], x.Trace + value);

    /// <summary>x[..., start:end:step, ...] along <paramref name="axis"/>.</summary>
    public OnnxValue Slice(string path, OnnxValue x, long axis, long start, long end, long step = 1)
    {
        var trace = x.Trace.slice(axis, start, Math.Min(end, x.Trace.shape[axis]), step);
        return graph.Node("Slice", path, [x.Name, Int64s([start]), Int64s([end]), Int64s([axis]), Int64s([step])], trace);
    }

    /// <summary>x.select(axis, index): the dimension removed.</summary>
    public OnnxValue Select(string path, OnnxValue x, long axis, long index) =>
        graph.Node("Gather", path, [x.Name, ScalarIndex(index)], x.Trace.select(axis, index), Int("axis", axis));

    public OnnxValue Concat(string path, IReadOnlyList<OnnxValue> values, long axis) =>
        graph.Node("Concat", path, values.Select(v => v.Name), cat(values.Select(v => v.Trace).ToList(), axis), Int("axis", axis));

    /// <summary>torch.roll along one axis, as two slices swapped (opset 17 has no Roll).</summary>
    public OnnxValue Roll(string path, OnnxValue x, long shift, long axis)
    {
        long size = x.Trace.shape[axis], split = ((-shift % size) + size) % size;
        if (split == 0) return x;
        return Concat(path, [Slice(path, x, axis, split, size), Slice(path, x, axis, 0, split)], axis);
    }

    /// <summary>Zeros appended after the end of each given axis (padding[i] along axis i).</summary>
    public OnnxValue PadEnd(string path, OnnxValue x, params long[] padding)
    {
        if (padding.All(p => p == 0)) return x;
        long rank = x.Trace.dim();
        long[] pads = [.. Enumerable.Repeat(0L, (int)rank), .. Enumerable.Range(0, (int)rank).Select(i => i < padding.Length ? padding[i] : 0)];
        // F.pad lists (start, end) pairs from the last axis backwards.
        long[] torchPads = [.. Enumerable.Range(0, (int)rank).Reverse().SelectMany(i => new[] { 0L, pads[rank + i] })];
        return graph.Node("Pad", path, [x.Name, Int64s(pads)], F.pad(x.Trace, torchPads));
    }

    /// <summary>The mean over <paramref name="axes"/>, which are removed.</summary>
    public OnnxValue ReduceMean(string path, OnnxValue x, params long[] axes) =>
        graph.Node("ReduceMean", path, [x.Name], x.Trace.mean(axes), Ints("axes", axes), Int("keepdims", 0));

    /// <summary>
    /// A constant [1, …] tensor repeated along a new batch: Expand to the batch x has at runtime (a class token
    /// prepended to every image's tokens).
    /// </summary>
    public OnnxValue ExpandToBatch(string path, OnnxValue x, string name, Tensor value)
    {
        var batch = graph.Node("Shape", path, [x.Name], tensor(x.Trace.shape), Int("start", 0), Int("end", 1));
        var shape = graph.Node("Concat", path, [batch.Name, Int64s(value.shape[1..])], tensor(x.Trace.shape), Int("axis", 0));
        return graph.Node("Expand", path, [graph.Initializer(name, value), shape.Name], value.expand([x.Trace.shape[0], .. value.shape[1..]]));
    }

    /// <summary>A parameter or buffer of <paramref name="module"/> by its state-dict name.</summary>
    public static Tensor Parameter(nn.Module module, string name) =>
        module.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Concat(module.named_buffers())
            .FirstOrDefault(p => p.name == name).Item2
        ?? throw new NotSupportedException($"ONNX export expected '{name}' in {module.GetType().Name}");

    /// <summary>
    /// The permutation a <see cref="TransformerParts.Permute"/> applies, which it keeps private: the first (in
    /// lexicographic order, so dimensions stay where they can) that reproduces its output on the trace.
    /// </summary>
    private static long[] PermutationOf(nn.Module module, Tensor trace)
    {
        using var scope = NewDisposeScope();
        var expected = ((nn.Module<Tensor, Tensor>)module).call(trace);
        return Permutations(Enumerable.Range(0, (int)trace.dim()).Select(i => (long)i).ToList())
            .FirstOrDefault(p => expected.shape.SequenceEqual(trace.permute(p).shape) && trace.permute(p).equal(expected).all().item<bool>())
            ?? throw new NotSupportedException($"no permutation reproduces {module.GetType().Name}'s output");
    }

    private static IEnumerable<long[]> Permutations(List<long> items) => items.Count == 0
        ? [[]]
        : items.SelectMany(first => Permutations([.. items.Where(i => i != first)]).Select(rest => (long[])[first, .. rest]));

    public OnnxValue MaxPool(string path, OnnxValue x, long[] kernel, long[] stride, long[] padding, bool ceil, long[] dilation, MaxPool2d? module) =>
        graph.Node("MaxPool", path, [x.Name],
            module?.call(x.Trace) ?? F.max_pool2d(x.Trace, kernel, stride, padding, dilation, ceil),
            Ints("kernel_shape", kernel), Ints("strides", stride), Ints("pads", [padding[0], padding[1], padding[0], padding[1]]),
            Ints("dilations", dilation), Int("ceil_mode", ceil ? 1 : 0));

    public OnnxValue AvgPool(string path, OnnxValue x, long[] kernel, long[] stride, long[] padding, bool ceil, bool countPadding, AvgPool2d? module) =>
        graph.Node("AveragePool", path, [x.Name],
            module?.call(x.Trace) ?? F.avg_pool2d(x.Trace, kernel, stride, padding, ceil, countPadding),
            Ints("kernel_shape", kernel), Ints("strides", stride), Ints("pads", [padding[0], padding[1], padding[0], padding[1]]),
            Int("ceil_mode", ceil ? 1 : 0), Int("count_include_pad", countPadding ? 1 : 0));

    /// <summary>
    /// ONNX has no adaptive pooling. Global pooling is GlobalAveragePool; otherwise each output cell averages the
    /// input window PyTorch gives it (floor(i·in/out) to ceil((i+1)·in/out)), written as two MatMuls with
    /// averaging matrices for this input size.
    /// </summary>
    public OnnxValue AdaptiveAvgPool(string path, OnnxValue x, long[] outputSize)
    {
        long outH = outputSize[0], outW = outputSize.Length > 1 ? outputSize[1] : outputSize[0];
        var trace = F.adaptive_avg_pool2d(x.Trace, [outH, outW]);
        long inH = x.Trace.shape[2], inW = x.Trace.shape[3];
        if (outH == 1 && outW == 1) return graph.Node("GlobalAveragePool", path, [x.Name], trace);
        if (outH == inH && outW == inW) return x;
        string rows = graph.Constant($"{path}.pool_rows", Averaging(inH, outH), outH, inH);
        string columns = graph.Constant($"{path}.pool_columns", Transpose(Averaging(inW, outW), outW, inW), inW, outW);
        var pooledColumns = graph.Node("MatMul", path, [x.Name, columns], trace);
        return graph.Node("MatMul", path, [rows, pooledColumns.Name], trace);
    }

    /// <summary>[output, input]: row i averages PyTorch's adaptive window i.</summary>
    private static float[] Averaging(long input, long output)
    {
        var matrix = new float[output * input];
        for (long i = 0; i < output; i++)
        {
            long start = i * input / output, end = ((i + 1) * input + output - 1) / output;
            for (long j = start; j < end; j++) matrix[i * input + j] = 1f / (end - start);
        }
        return matrix;
    }

    private static float[] Transpose(float[] matrix, long rows, long columns)
    {
        var transposed = new float[matrix.Length];
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < columns; c++)
                transposed[c * rows + r] = matrix[r * columns + c];
        return transposed;
    }

    public OnnxValue Relu(string path, OnnxValue x) => graph.Node("Relu", path, [x.Name], F.relu(x.Trace));

    public OnnxValue Flatten(string path, OnnxValue x) => graph.Node("Flatten", path, [x.Name], x.Trace.flatten(1), Int("axis", 1));

    public OnnxValue Add(string path, OnnxValue a, OnnxValue b) => graph.Node("Add", path, [a.Name, b.Name], a.Trace + b.Trace);

    public OnnxValue Mul(string path, OnnxValue a, OnnxValue b) => graph.Node("Mul", path, [a.Name, b.Name], a.Trace * b.Trace);

    /// <summary>Concatenated on channels; a single value passes through.</summary>
    public OnnxValue Concat(string path, List<OnnxValue> values) => values.Count == 1
        ? values[0]
        : graph.Node("Concat", path, values.Select(v => v.Name), cat(values.Select(v => v.Trace).ToList(), 1), Int("axis", 1));

    /// <summary>A shared int64 vector constant's name.</summary>
    public string Int64s(long[] values)
    {
        string name = $"constant.int64.[{string.Join(",", values)}]";
        if (!_constants.ContainsKey(name)) _constants[name] = graph.Int64s(name, values);
        return _constants[name];
    }

    /// <summary>A shared rank-0 int64 constant (a Gather index that removes its dimension).</summary>
    private string ScalarIndex(long index)
    {
        string name = $"constant.index.{index}";
        if (!_constants.ContainsKey(name)) _constants[name] = graph.Int64(name, index);
        return _constants[name];
    }

    /// <summary>A shared scalar constant's name.</summary>
    public string Scalar(float value)
    {
        string name = $"constant.{value:g}";
        if (!_constants.ContainsKey(name)) _constants[name] = graph.Scalar(name, value);
        return _constants[name];
    }

    public static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";
}
