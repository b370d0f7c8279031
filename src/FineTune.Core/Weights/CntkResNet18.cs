using FineTune.Core.Models;
using FineTune.Core.Models.Families;
using Google.Protobuf;
using Onnx;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Weights;

/// <summary>
/// The offline ImageNet backbone: ML.NET's CNTK ResNet18 (NuGet Microsoft.ML.DnnImageFeaturizer.ResNet18),
/// shipped beside the app. Its layout is torchvision's BasicBlock ResNet except that layer4 has 3 blocks; it
/// has no fc; it takes BGR 0–255 pixels minus a 224×224 mean image.
/// </summary>
public static class CntkResNet18
{
    public const string FamilyName = "resnet18-cntk";
    /// <summary>The same weights taking torchvision's RGB ImageNet-normalised input.</summary>
    public const string RgbFamilyName = "resnet18-cntk-rgb";
    public const int InputSize = 224;

    /// <summary>Blocks per stage: torchvision's resnet18 has [2, 2, 2, 2].</summary>
    public static IReadOnlyList<int> Layers { get; } = [2, 2, 2, 3];

    public static string Directory => Path.Combine(AppContext.BaseDirectory, "pretrained", "cntk-resnet18");
    public static string ModelPath => Path.Combine(Directory, "ResNet18.onnx");
    public static string PreprocessPath => Path.Combine(Directory, "ResNetPreprocess.onnx");

    public static nn.Module<Tensor, Tensor> CreateLayout() =>
        new ResNet("ResNet18Cntk", BasicBlock.Create, expansion: 1, layers: [.. Layers], numClasses: 1000,
            zero_init_residual: false, groups: 1, width_per_group: 64, replace_stride_with_dilation: null,
            norm_layer: null, weights_file: null, skipfc: false, device: null);

    /// <summary>The mean image (BGR, 0–255, CHW) that the native input has subtracted.</summary>
    public static float[] ReadMeanImage(string preprocessPath)
    {
        var graph = ReadGraph(preprocessPath);
        var mean = graph.Initializer.SingleOrDefault(t => t.Name == "MeanImage")
            ?? throw new InvalidWeightsException($"{preprocessPath} has no MeanImage");
        return Floats(mean);
    }

    /// <summary>
    /// Converts the ONNX graph's initializers into a state dict with torchvision's names (no fc): each Conv is
    /// paired with the BatchNormalization that consumes its output, and the pairs are assigned to torchvision's
    /// modules in graph order, 1×1 convolutions being the blocks' downsample shortcuts.
    /// </summary>
    public static Dictionary<string, Tensor> ReadStateDict(string modelPath)
    {
        var graph = ReadGraph(modelPath);
        var initializers = graph.Initializer.ToDictionary(t => t.Name);
        var normByInput = graph.Node.Where(n => n.OpType == "BatchNormalization").ToDictionary(n => n.Input[0]);
        var pairs = graph.Node.Where(n => n.OpType == "Conv")
            .Select(conv => (conv, norm: normByInput.GetValueOrDefault(conv.Output[0])
                ?? throw new InvalidWeightsException($"{modelPath}: convolution {conv.Name} is not followed by batch normalisation")))
            .ToList();

        var state = new Dictionary<string, Tensor>();
        void Add(string conv, string norm, (NodeProto conv, NodeProto norm) pair)
        {
            state[$"{conv}.weight"] = ToTensor(initializers[pair.conv.Input[1]]);
            string[] parts = ["weight", "bias", "running_mean", "running_var"];
            for (int i = 0; i < parts.Length; i++)
                state[$"{norm}.{parts[i]}"] = ToTensor(initializers[pair.norm.Input[i + 1]]);
        }

        int next = 0;
        Add("conv1", "bn1", pairs[next++]);
        for (int layer = 0; layer < Layers.Count; layer++)
        {
            for (int block = 0; block < Layers[layer]; block++)
            {
                string prefix = $"layer{layer + 1}.{block}";
                bool downsamples = layer > 0 && block == 0;
                var blockPairs = pairs.Skip(next).Take(downsamples ? 3 : 2).ToList();
                next += blockPairs.Count;
                var shortcut = blockPairs.Where(p => KernelIs1x1(p.conv)).ToList();
                if (shortcut.Count != (downsamples ? 1 : 0))
                    throw new InvalidWeightsException($"{modelPath}: {prefix} does not have the expected ResNet18 block layout");
                var main = blockPairs.Except(shortcut).ToList();
                Add($"{prefix}.conv1", $"{prefix}.bn1", main[0]);
                Add($"{prefix}.conv2", $"{prefix}.bn2", main[1]);
                if (downsamples) Add($"{prefix}.downsample.0", $"{prefix}.downsample.1", shortcut[0]);
            }
        }
        if (next != pairs.Count)
            throw new InvalidWeightsException($"{modelPath}: {pairs.Count - next} convolutions left over after layer4");
        return state;
    }

    /// <summary>
    /// Rewrites a native state dict for RGB ImageNet-normalised input: conv1's input channels are swapped
    /// and scaled by 255·std, and the constant the native input carried (255·mean − the mean image's
    /// per-channel average) goes into bn1's running mean. Exact but for two things the native graph does
    /// differently: the mean image varies across the picture (±5 of 255) and conv1's zero padding pads
    /// differently normalised pixels; features agree closely but not bit for bit.
    /// </summary>
    public static Dictionary<string, Tensor> FoldIntoRgbInput(IReadOnlyDictionary<string, Tensor> native, float[] meanImage, Preprocessing imageNet)
    {
        using var scope = NewDisposeScope();
        var folded = native.ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var weight = native["conv1.weight"]; // [64, 3 (BGR), 7, 7]
        int plane = meanImage.Length / 3;
        var rgbWeight = new Tensor[3];
        var constantBgr = new float[3];
        for (int rgb = 0; rgb < 3; rgb++)
        {
            int bgr = 2 - rgb;
            rgbWeight[rgb] = weight[.., bgr..(bgr + 1)] * (255f * imageNet.Std[rgb]);
            constantBgr[bgr] = 255f * imageNet.Mean[rgb] - meanImage.AsSpan(bgr * plane, plane).ToArray().Average();
        }
        // Convolving a constant image gives, per output channel, Σ weight · constant of its input channel.
        var shift = (weight * tensor(constantBgr).view(1, 3, 1, 1)).sum([1, 2, 3]);
        folded["conv1.weight"].Dispose();
        folded["conv1.weight"] = cat(rgbWeight, 1).MoveToOuterDisposeScope();
        folded["bn1.running_mean"].Dispose();
        folded["bn1.running_mean"] = (native["bn1.running_mean"] - shift).MoveToOuterDisposeScope();
        foreach (var value in folded.Values) value.MoveToOuterDisposeScope();
        return folded;
    }

    private static GraphProto ReadGraph(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"the bundled CNTK ResNet18 file is missing: {path}", path);
        try
        {
            using var stream = File.OpenRead(path);
            return ModelProto.Parser.ParseFrom(stream).Graph;
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidWeightsException($"{path} is not an ONNX model: {e.Message}", e);
        }
    }

    private static bool KernelIs1x1(NodeProto conv) =>
        conv.Attribute.Single(a => a.Name == "kernel_shape").Ints.All(k => k == 1);

    private static Tensor ToTensor(TensorProto proto) => tensor(Floats(proto), proto.Dims.ToArray());

    private static float[] Floats(TensorProto proto)
    {
        if (proto.DataType != (int)TensorProto.Types.DataType.Float)
            throw new InvalidWeightsException($"initializer {proto.Name} is not float32");
        return proto.RawData.IsEmpty
            ? proto.FloatData.ToArray()
            : System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(proto.RawData.Span).ToArray();
    }
}
