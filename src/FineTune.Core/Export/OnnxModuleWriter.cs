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
internal sealed class OnnxModuleWriter(OnnxGraphBuilder graph)
{
    private readonly Dictionary<string, string> _constants = [];

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
            case Linear linear: return Gemm(linear, path, x);
            case ReLU: return Relu(path, x);
            case ReLU6: return graph.Node("Clip", path, [x.Name, Scalar(0), Scalar(6)], F.relu6(x.Trace));
            case Hardswish: return graph.Node("HardSwish", path, [x.Name], F.hardswish(x.Trace));
            case Hardsigmoid:
                return graph.Node("HardSigmoid", path, [x.Name], F.hardsigmoid(x.Trace), Float("alpha", 1f / 6), Float("beta", 0.5f));
            case Sigmoid: return graph.Node("Sigmoid", path, [x.Name], x.Trace.sigmoid());
            case MaxPool2d pool:
                return MaxPool(path, x, pool.kernel_size, pool.stride ?? pool.kernel_size, pool.padding ?? [0, 0], pool.ceil_mode, pool.dilation ?? [1, 1], pool);
            case AvgPool2d pool when pool.divisor_override is null:
                return AvgPool(path, x, pool.kernel_size, pool.stride ?? pool.kernel_size, pool.padding ?? [0, 0], pool.ceil_mode, pool.count_include_pad, pool);
            case AdaptiveAvgPool2d pool: return AdaptiveAvgPool(path, x, pool.output_size);
            case Flatten flatten when flatten.start_dim == 1 && flatten.end_dim == -1: return Flatten(path, x);
            // Inference: dropout passes its input through.
            case Dropout or Identity: return x;
            // torchvision.ops' block, shared by several families (MobileNetV3; EfficientNet's has SiLU inside).
            case TorchSharp.torchvision.SqueezeExcitation:
                return Mul(path, Children(module, path, x, "avgpool", "fc1", "activation", "fc2", "scale_activation"), x);
        }
        return ModelRegistry.OnnxForwards.TryGetValue(module.GetType().Name, out var forward)
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

    /// <summary>A shared scalar constant's name.</summary>
    public string Scalar(float value)
    {
        string name = $"constant.{value:g}";
        if (!_constants.ContainsKey(name)) _constants[name] = graph.Scalar(name, value);
        return _constants[name];
    }

    public static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";
}
