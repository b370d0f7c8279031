using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Data;
using FineTune.Core.Models;
using Google.Protobuf;
using Onnx;
using static FineTune.Core.Export.OnnxGraphBuilder;
using static TorchSharp.torch;

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
    public static ModelProto Export(FineTuneModel model, IReadOnlyList<string> classes, Preprocessing preprocessing, int? inputSize = null) =>
        Export(model, classes, preprocessing, inputSize, ModelRegistry.ArchitectureOf(model.Family).OnnxForwards);

    /// <param name="forwards">the family forwards the writer knows (a family not yet in the registry brings its own)</param>
    /// <param name="externalData">where the weights go as they are met (ONNX's external data), instead of into the graph</param>
    internal static ModelProto Export(FineTuneModel model, IReadOnlyList<string> classes, Preprocessing preprocessing, int? inputSize,
        IReadOnlyDictionary<string, OnnxForward> forwards, OnnxExternalData? externalData = null)
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

        var builder = new OnnxGraphBuilder(externalData);
        var writer = new OnnxModuleWriter(builder, forwards);
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
        AddMetadata(onnx, MetadataKeys.Preprocessing, PreprocessingMetadata(preprocessing, size).ToJsonString());
        AddMetadata(onnx, MetadataKeys.Input, InputDescription(preprocessing, size));
        return onnx;
    }

    /// <summary>
    /// Protobuf's limit on one message is 2 GiB: a graph whose weights pass 1.75 GiB keeps them in a file beside it
    /// (ONNX's external data), as torch.onnx.export does.
    /// </summary>
    public const long MaxInlineWeightBytes = 7L << 28;

    /// <summary>
    /// Writes <paramref name="model"/> as an ONNX graph (<see cref="Export(FineTuneModel, IReadOnlyList{string}, Preprocessing, int?)"/>) to
    /// <paramref name="path"/>. When its weights pass <paramref name="externalAbove"/> bytes, each goes from the model's own
    /// memory into <c>path + ".data"</c> as the graph is built (page-aligned, named relative to the graph, as ONNX Runtime
    /// and <c>onnx.load</c> read it), so the largest builders' weights are never held twice. Each file is written beside and
    /// moved into place, so a failed export leaves an earlier file whole. Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> Save(FineTuneModel model, IReadOnlyList<string> classes, Preprocessing preprocessing, string path,
        int? inputSize = null, long externalAbove = MaxInlineWeightBytes)
    {
        ArgumentNullException.ThrowIfNull(model);
        var forwards = ModelRegistry.ArchitectureOf(model.Family).OnnxForwards;
        // The graph's initializers are the model's parameters and statistics, in float32.
        long weightBytes = model.Module.state_dict().Values.Sum(t => t.NumberOfElements * sizeof(float));
        string data = path + ".data";
        string temporary = path + ".partial", dataTemporary = data + ".partial";
        try
        {
            bool external = weightBytes > externalAbove;
            ModelProto graph;
            if (external)
            {
                using var stream = File.Create(dataTemporary);
                graph = Export(model, classes, preprocessing, inputSize, forwards, new OnnxExternalData(stream, Path.GetFileName(data)));
            }
            else
            {
                graph = Export(model, classes, preprocessing, inputSize, forwards);
            }
            using (var stream = File.Create(temporary))
                graph.WriteTo(stream);
            if (!external)
            {
                string written = Move(temporary, path);
                // An earlier export of a larger model to this path left its weights beside it: they are not this graph's.
                File.Delete(data);
                return [written];
            }
            return [Move(dataTemporary, data), Move(temporary, path)];
        }
        finally
        {
            File.Delete(temporary);
            File.Delete(dataTemporary);
        }

        static string Move(string from, string to)
        {
            File.Move(from, to, overwrite: true);
            return to;
        }
    }

    private static void AddMetadata(ModelProto model, string key, string value) =>
        model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });

    private static string InputDescription(Preprocessing p, int size)
    {
        string resample = $"{Interpolations.Choices[p.Interpolation].Name}, antialiased, as PIL";
        string fit = p.Resize == ResizeMode.Pad
            ? $"the long side resized to {size} ({resample}) and centred on white to {size}×{size}"
            : $"the short side resized to {p.ResizeSize} ({resample}) and the centre {size}×{size} cropped";
        string order = p.ChannelOrder == ChannelOrder.Rgb ? "RGB" : "BGR";
        string meanImage = p.MeanImage is null ? "" : "; the graph subtracts the family's mean image itself";
        return $"float32 NCHW [batch, 3, {size}, {size}]: {fit}; {order} channels, pixel (0–255) × {p.Scale:g6}, " +
            $"then (x − mean) / std per channel with mean [{string.Join(", ", p.Mean)}] and std [{string.Join(", ", p.Std)}]{meanImage}";
    }

    /// <summary>
    /// The preprocessing as JSON in the model's metadata, for programs: the <see cref="Preprocessing"/> record as the model
    /// card states it, at the graph's input size, with the input's layout, Pillow's antialiasing, the pad background and whether the graph subtracts the mean image.
    /// </summary>
    public static JsonObject PreprocessingMetadata(Preprocessing p, int size)
    {
        var json = JsonSerializer.SerializeToNode(p with { CropSize = size }, MetadataJson)!.AsObject();
        // Both Pillow filters antialias every downscale (torchvision 0.14's Resize on PIL images).
        json["antialias"] = true;
        json["background"] = Preprocessing.Background;
        json["meanImageInGraph"] = p.SubtractsMeanImage;
        json["layout"] = "NCHW";
        return json;
    }
}
