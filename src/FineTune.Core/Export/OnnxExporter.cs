using System.Reflection;
using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Models;
using Google.Protobuf;
using Onnx;
using TorchSharp.Modules;
using static FineTune.Core.Export.OnnxGraphBuilder;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Core.Export;

/// <summary>
/// Writes a fine-tuned model as an ONNX graph (opset <see cref="Opset"/>): one input <see cref="InputName"/>,
/// float32 NCHW [batch, 3, crop, crop] preprocessed as the metadata says, one output <see cref="OutputName"/>
/// [batch, classes] of logits. The module tree is walked with each architecture's forward written out by hand
/// (TorchSharp has no tracer); a trace input runs alongside, and the exported structure must reproduce the
/// module's own output on it before anything is written.
/// </summary>
public static class OnnxExporter
{
    public const int Opset = 17;
    public const string InputName = "input";
    public const string OutputName = "logits";
    public const string ProducerName = "FineTune Functions";

    private static readonly JsonSerializerOptions MetadataJson = new(JsonSerializerDefaults.Web);

    /// <summary>The metadata_props keys (ONNX Runtime: <c>ModelMetadata.CustomMetadataMap</c>).</summary>
    public static class MetadataKeys
    {
        public const string Family = "finetune.family";
        public const string Classes = "finetune.classes";
        public const string Preprocessing = "finetune.preprocessing";
        public const string Input = "finetune.input";
    }

    /// <param name="inputSize">the square input side the graph is fixed to; the family's crop size by default</param>
    public static ModelProto Export(FineTuneModel model, IReadOnlyList<string> classes, Preprocessing preprocessing, int? inputSize = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (classes.Count != model.NumClasses)
            throw new ArgumentException($"{classes.Count} class names for a model with {model.NumClasses} classes", nameof(classes));
        int size = inputSize ?? preprocessing.CropSize;
        var meanImage = preprocessing.MeanImage?.Value;
        if (meanImage is not null && size != preprocessing.CropSize)
            throw new ArgumentException($"{model.Family.Name} subtracts a {preprocessing.CropSize}² mean image: its input size is fixed", nameof(inputSize));

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.EvalMode();
        var device = model.Device;
        // Smooth and varied, so that every ReLU, pool and max sees both signs and the check means something.
        var trace = arange(3 * size * size, dtype: float32, device: device).mul(0.001f).sin().mul(2f).view(1, 3, size, size);

        var builder = new OnnxGraphBuilder();
        var writer = new ModuleWriter(builder);
        var input = new OnnxValue(InputName, trace);
        if (meanImage is not null)
        {
            // The mean image travels inside the graph, so a user normalises with the per-channel mean and std alone:
            // (x − image − mean) / std is (x − mean) / std − image / std.
            using var scaled = tensor(meanImage, [1, 3, size, size], device: device) / tensor(preprocessing.Std.ToArray(), device: device).view(1, 3, 1, 1);
            string mean = builder.Initializer("preprocessing.mean_image", scaled);
            input = builder.Node("Sub", "preprocessing", [input.Name, mean], trace - scaled);
        }
        var output = writer.Write(model.Module, "", input);

        var expected = model.Module.call(input.Trace);
        double difference = (output.Trace - expected).abs().max().item<float>();
        double magnitude = Math.Max(1, expected.abs().max().item<float>());
        if (difference > 1e-4 * magnitude)
            throw new InvalidOperationException($"{model.Family.Name}: the exported graph's structure does not reproduce the model's forward (max difference {difference:g3})");

        var graph = builder.Graph;
        graph.Node.Single(node => node.Output[0] == output.Name).Output[0] = OutputName;
        graph.Input.Add(ValueInfo(InputName, "batch", 3, size, size));
        graph.Output.Add(ValueInfo(OutputName, "batch", classes.Count));

        var onnx = new ModelProto
        {
            IrVersion = 8,
            ProducerName = ProducerName,
            ProducerVersion = typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "",
            DocString = $"{model.Family.Name} fine-tuned on {classes.Count} classes. Input: {InputDescription(preprocessing, size)}. Output: logits; softmax gives the class probabilities.",
            Graph = graph,
        };
        onnx.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        AddMetadata(onnx, MetadataKeys.Family, model.Family.Name);
        AddMetadata(onnx, MetadataKeys.Classes, JsonSerializer.Serialize(classes));
        AddMetadata(onnx, MetadataKeys.Preprocessing, JsonSerializer.Serialize(PreprocessingMetadata.Of(preprocessing, size), MetadataJson));
        AddMetadata(onnx, MetadataKeys.Input, InputDescription(preprocessing, size));
        return onnx;
    }

    public static void Save(ModelProto model, string path)
    {
        // Written beside and moved into place: a failed write leaves an earlier file whole.
        string temporary = path + ".partial";
        try
        {
            using (var stream = File.Create(temporary))
                model.WriteTo(stream);
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    public static byte[] ToBytes(ModelProto model) => model.ToByteArray();

    private static void AddMetadata(ModelProto model, string key, string value) =>
        model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });

    private static string InputDescription(Preprocessing p, int size)
    {
        string fit = p.Resize == ResizeMode.Pad
            ? $"the long side resized to {size} (bilinear, antialiased, as PIL) and centred on white to {size}×{size}"
            : $"the short side resized to {p.ResizeSize} (bilinear, antialiased, as PIL) and the centre {size}×{size} cropped";
        string order = p.ChannelOrder == ChannelOrder.Rgb ? "RGB" : "BGR";
        string meanImage = p.MeanImage is null ? "" : "; the graph subtracts the family's mean image itself";
        return $"float32 NCHW [batch, 3, {size}, {size}]: {fit}; {order} channels, pixel (0–255) × {p.Scale:g6}, " +
            $"then (x − mean) / std per channel with mean [{string.Join(", ", p.Mean)}] and std [{string.Join(", ", p.Std)}]{meanImage}";
    }

    /// <summary>The preprocessing as JSON in the model's metadata, for programs.</summary>
    public sealed record PreprocessingMetadata(
        string Resize, int ResizeSize, int CropSize, string Interpolation, bool Antialias, string Background,
        string ChannelOrder, float Scale, IReadOnlyList<float> Mean, IReadOnlyList<float> Std, bool MeanImageInGraph, string Layout)
    {
        public static PreprocessingMetadata Of(Preprocessing p, int size) => new(
            ResizeModes.Choices[p.Resize].Name, p.ResizeSize, size, "bilinear", true,
            $"#{ImageLoader.Background.R:x2}{ImageLoader.Background.G:x2}{ImageLoader.Background.B:x2}",
            p.ChannelOrder.ToString().ToLowerInvariant(), p.Scale, p.Mean, p.Std, p.MeanImage is not null, "NCHW");
    }

    /// <summary>Writes modules as ONNX operators; each composite mirrors its TorchSharp forward.</summary>
    private sealed class ModuleWriter(OnnxGraphBuilder graph)
    {
        private readonly Dictionary<string, string> _constants = [];

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
            }
            return module.GetType().Name switch
            {
                "ResNet" => Children(module, path, x, "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "flatten", "fc"),
                "BasicBlock" => Residual(module, path, x, x =>
                    Child(module, path, "bn2", Child(module, path, "conv2", Relu(path, Children(module, path, x, "conv1", "bn1"))))),
                "Bottleneck" => Residual(module, path, x, x =>
                    Children(module, path, Relu(path, Children(module, path, Relu(path, Children(module, path, x, "conv1", "bn1")), "conv2", "bn2")), "conv3", "bn3")),
                "VGG" or "AlexNet" => Child(module, path, "classifier", Flatten(path, Children(module, path, x, "features", "avgpool"))),
                "MobileNetV2" => Child(module, path, "classifier", Flatten(path, AdaptiveAvgPool(path, Child(module, path, "features", x), [1, 1]))),
                "MobileNetV3" => Child(module, path, "classifier", Flatten(path, Children(module, path, x, "features", "avgpool"))),
                // MobileNet's blocks add their input when stride is 1 and channels stay: exactly when the shape stays.
                "InvertedResidual" => InvertedResidual(module, path, x),
                "SqueezeExcitation" => Mul(path, Children(module, path, x, "avgpool", "fc1", "activation", "fc2", "scale_activation"), x),
                "GoogleNet" => Children(module, path, Flatten(path, Children(module, path, WithoutTransformInput(module, x),
                        "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                        "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4", "inception5a", "inception5b", "avgpool")),
                    "dropout", "fc"),
                "Inception" => Concat(path, [Child(module, path, "branch1", x), Child(module, path, "branch2", x), Child(module, path, "branch3", x), Child(module, path, "branch4", x)]),
                "InceptionV3" => Child(module, path, "fc", Flatten(path, Children(module, path, WithoutTransformInput(module, x),
                    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
                    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
                    "avgpool", "dropout"))),
                "InceptionA" => Concat(path, [
                    Child(module, path, "branch1x1", x),
                    Children(module, path, x, "branch5x5_1", "branch5x5_2"),
                    Children(module, path, x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                    Child(module, path, "branch_pool", PoolBranch(path, x))]),
                "InceptionB" => Concat(path, [
                    Child(module, path, "branch3x3", x),
                    Children(module, path, x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                    MaxPool(path, x, [3, 3], [2, 2], [0, 0], false, [1, 1], null)]),
                "InceptionC" => Concat(path, [
                    Child(module, path, "branch1x1", x),
                    Children(module, path, x, "branch7x7_1", "branch7x7_2", "branch7x7_3"),
                    Children(module, path, x, "branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"),
                    Child(module, path, "branch_pool", PoolBranch(path, x))]),
                "InceptionD" => Concat(path, [
                    Children(module, path, x, "branch3x3_1", "branch3x3_2"),
                    Children(module, path, x, "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"),
                    MaxPool(path, x, [3, 3], [2, 2], [0, 0], false, [1, 1], null)]),
                "InceptionE" => InceptionE(module, path, x),
                "DenseNet" => Child(module, path, "classifier", Flatten(path, AdaptiveAvgPool(path, Relu(path, Child(module, path, "features", x)), [1, 1]))),
                "DenseBlock" => DenseBlock(module, path, x),
                "DenseLayer" => Children(module, path, x, "norm1", "relu1", "conv1", "norm2", "relu2", "conv2"),
                _ => throw new NotSupportedException($"ONNX export does not know {module.GetType().Name} at '{path}'"),
            };
        }

        private OnnxValue Child(nn.Module parent, string path, string name, OnnxValue x)
        {
            var child = parent.named_children().FirstOrDefault(c => c.name == name).module
                ?? throw new NotSupportedException($"ONNX export expected '{name}' in {parent.GetType().Name} at '{path}'");
            return Write(child, Join(path, name), x);
        }

        private OnnxValue Children(nn.Module parent, string path, OnnxValue x, params string[] names)
        {
            foreach (var name in names) x = Child(parent, path, name, x);
            return x;
        }

        private OnnxValue Residual(nn.Module block, string path, OnnxValue x, Func<OnnxValue, OnnxValue> main)
        {
            var output = main(x);
            bool downsamples = block.named_children().Any(c => c.name == "downsample");
            var identity = downsamples ? Child(block, path, "downsample", x) : x;
            return Relu(path, Add(path, output, identity));
        }

        private OnnxValue InvertedResidual(nn.Module block, string path, OnnxValue x)
        {
            var (name, _) = block.named_children().Single();
            var output = Child(block, path, name, x);
            return output.Trace.shape.SequenceEqual(x.Trace.shape) ? Add(path, output, x) : output;
        }

        private OnnxValue InceptionE(nn.Module module, string path, OnnxValue x)
        {
            var branch3x3 = Child(module, path, "branch3x3_1", x);
            var branch3x3dbl = Children(module, path, x, "branch3x3dbl_1", "branch3x3dbl_2");
            return Concat(path, [
                Child(module, path, "branch1x1", x),
                Concat(path, [Child(module, path, "branch3x3_2a", branch3x3), Child(module, path, "branch3x3_2b", branch3x3)]),
                Concat(path, [Child(module, path, "branch3x3dbl_3a", branch3x3dbl), Child(module, path, "branch3x3dbl_3b", branch3x3dbl)]),
                Child(module, path, "branch_pool", PoolBranch(path, x))]);
        }

        /// <summary>Each layer sees the block input and all earlier layers' outputs, concatenated on channels.</summary>
        private OnnxValue DenseBlock(nn.Module block, string path, OnnxValue x)
        {
            var collected = new List<OnnxValue> { x };
            foreach (var (name, layer) in block.named_children())
                collected.Add(Write(layer, Join(path, name), Concat(path, collected)));
            return Concat(path, collected);
        }

        /// <summary>Inception's pooling branch: avg_pool2d(3, stride 1, padding 1), zero padding counted.</summary>
        private OnnxValue PoolBranch(string path, OnnxValue x) => AvgPool(path, x, [3, 3], [1, 1], [1, 1], false, true, null);

        /// <summary>torchvision's transform_input re-normalises ImageNet input; the registry builds both without it.</summary>
        private static OnnxValue WithoutTransformInput(nn.Module model, OnnxValue x)
        {
            var field = model.GetType().GetField("transform_input", BindingFlags.NonPublic | BindingFlags.Instance);
            if (field?.GetValue(model) is true)
                throw new NotSupportedException($"ONNX export does not write {model.GetType().Name} with transform_input");
            return x;
        }

        private OnnxValue Conv(Conv2d conv, string path, OnnxValue x)
        {
            if (conv.padding is not { } padding || conv.padding_mode != TorchSharp.PaddingModes.Zeros)
                throw new NotSupportedException($"ONNX export writes convolutions with explicit zero padding only ('{path}')");
            var inputs = new List<string> { x.Name, graph.Initializer(path + ".weight", conv.weight!) };
            if (conv.bias is { } bias) inputs.Add(graph.Initializer(path + ".bias", bias));
            return graph.Node("Conv", path, inputs, conv.call(x.Trace),
                Ints("kernel_shape", conv.kernel_size), Ints("strides", conv.stride), Ints("pads", [padding[0], padding[1], padding[0], padding[1]]),
                Ints("dilations", conv.dilation), Int("group", conv.groups));
        }

        private OnnxValue BatchNorm(BatchNorm2d norm, string path, OnnxValue x)
        {
            if (norm.running_mean is null || norm.running_var is null || norm.bias is null)
                throw new NotSupportedException($"ONNX export needs running statistics and affine parameters at '{path}'");
            string[] inputs = [x.Name, graph.Initializer(path + ".weight", norm.weight), graph.Initializer(path + ".bias", norm.bias),
                graph.Initializer(path + ".running_mean", norm.running_mean), graph.Initializer(path + ".running_var", norm.running_var)];
            return graph.Node("BatchNormalization", path, inputs, norm.call(x.Trace), Float("epsilon", (float)norm.eps));
        }

        private OnnxValue Gemm(Linear linear, string path, OnnxValue x)
        {
            var inputs = new List<string> { x.Name, graph.Initializer(path + ".weight", linear.weight!) };
            if (linear.bias is { } bias) inputs.Add(graph.Initializer(path + ".bias", bias));
            return graph.Node("Gemm", path, inputs, linear.call(x.Trace), Int("transB", 1));
        }

        private OnnxValue MaxPool(string path, OnnxValue x, long[] kernel, long[] stride, long[] padding, bool ceil, long[] dilation, MaxPool2d? module) =>
            graph.Node("MaxPool", path, [x.Name],
                module?.call(x.Trace) ?? F.max_pool2d(x.Trace, kernel, stride, padding, dilation, ceil),
                Ints("kernel_shape", kernel), Ints("strides", stride), Ints("pads", [padding[0], padding[1], padding[0], padding[1]]),
                Ints("dilations", dilation), Int("ceil_mode", ceil ? 1 : 0));

        private OnnxValue AvgPool(string path, OnnxValue x, long[] kernel, long[] stride, long[] padding, bool ceil, bool countPadding, AvgPool2d? module) =>
            graph.Node("AveragePool", path, [x.Name],
                module?.call(x.Trace) ?? F.avg_pool2d(x.Trace, kernel, stride, padding, ceil, countPadding),
                Ints("kernel_shape", kernel), Ints("strides", stride), Ints("pads", [padding[0], padding[1], padding[0], padding[1]]),
                Int("ceil_mode", ceil ? 1 : 0), Int("count_include_pad", countPadding ? 1 : 0));

        /// <summary>
        /// ONNX has no adaptive pooling. Global pooling is GlobalAveragePool; otherwise each output cell averages the
        /// input window PyTorch gives it (floor(i·in/out) to ceil((i+1)·in/out)), written as two MatMuls with
        /// averaging matrices for this input size.
        /// </summary>
        private OnnxValue AdaptiveAvgPool(string path, OnnxValue x, long[] outputSize)
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

        private OnnxValue Relu(string path, OnnxValue x) => graph.Node("Relu", path, [x.Name], F.relu(x.Trace));

        private OnnxValue Flatten(string path, OnnxValue x) => graph.Node("Flatten", path, [x.Name], x.Trace.flatten(1), Int("axis", 1));

        private OnnxValue Add(string path, OnnxValue a, OnnxValue b) => graph.Node("Add", path, [a.Name, b.Name], a.Trace + b.Trace);

        private OnnxValue Mul(string path, OnnxValue a, OnnxValue b) => graph.Node("Mul", path, [a.Name, b.Name], a.Trace * b.Trace);

        private OnnxValue Concat(string path, List<OnnxValue> values) => values.Count == 1
            ? values[0]
            : graph.Node("Concat", path, values.Select(v => v.Name), cat(values.Select(v => v.Trace).ToList(), 1), Int("axis", 1));

        private string Scalar(float value)
        {
            string name = $"constant.{value:g}";
            if (!_constants.ContainsKey(name)) _constants[name] = graph.Scalar(name, value);
            return _constants[name];
        }

        private static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";
    }
}
