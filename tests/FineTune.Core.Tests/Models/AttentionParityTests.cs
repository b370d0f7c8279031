using System.Globalization;
using FineTune.Core.Models;
using FineTune.Core.Tests.Reference;
using FineTune.Core.Weights;
using FineTune.Testing;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Models;

/// <summary>
/// The attention families (ViT, Swin v1 and v2, MaxViT) against torchvision 0.14 itself: PyTorch builds a builder with
/// every parameter drawn afresh (zero heads, class tokens and v2 key biases, unit norms and v2 logit scales beyond their
/// clamp would hide mistakes) and its logits; its state dict must load here with exactly torchvision's keys and shapes,
/// buffers included, and give those logits; the state dict we then write must load in torchvision (strict) and do the same.
/// </summary>
public sealed class AttentionParityTests : IDisposable
{
    private const double Tolerance = 1e-4;
    private static readonly string Script = Path.Combine(AppContext.BaseDirectory, "Reference", "attention_reference.py");
    private readonly string _dir = Directory.CreateTempSubdirectory("attention-parity-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly Dictionary<string, Func<nn.Module<Tensor, Tensor>>> Builders = new()
    {
        ["vit_b_16"] = () => VisionTransformer.VitB16(),
        ["vit_b_32"] = () => VisionTransformer.VitB32(),
        ["vit_l_16"] = () => VisionTransformer.VitL16(),
        ["vit_l_32"] = () => VisionTransformer.VitL32(),
        ["vit_h_14"] = () => VisionTransformer.VitH14(),
        ["swin_t"] = () => SwinTransformer.SwinT(),
        ["swin_s"] = () => SwinTransformer.SwinS(),
        ["swin_b"] = () => SwinTransformer.SwinB(),
        ["swin_v2_t"] = () => SwinTransformer.SwinV2T(),
        ["swin_v2_s"] = () => SwinTransformer.SwinV2S(),
        ["swin_v2_b"] = () => SwinTransformer.SwinV2B(),
        ["maxvit_t"] = () => MaxVit.MaxVitT(),
    };

    /// <summary>
    /// One builder per family, each at its pretrained weights' shapes. ViT and MaxViT at 224 pixels: a ViT's position
    /// embedding has torchvision's pretrained shape only there, and MaxViT's blocks need multiples of 7 (224 is the least).
    /// Swin at 96: its shapes do not depend on the input, and 96 pads its maps (24→28, 12→14 for v1) with the windows still
    /// shifted, v2's 24×24 map fits its 8×8 windows unpadded; each later stage's map fits in one window (no shift).
    /// </summary>
    // Registered now: TorchvisionParityTests checks the smallest of each architecture in CI; Swin v2's attention (cosine,
    // log-spaced position bias) is checked here too, as that picks swin_t for Swin.
    [Theory]
    [InlineData("swin_v2_t", 96)]
    public void OneBuilderPerFamilyGivesTorchvisionsLogits(string builder, int size) => CheckParity(builder, size);

    /// <summary>torchvision's initialisation gives finite logits (TorchSharp's native trunc_normal_ leaves NaNs in Swin's big linears).</summary>
    [Fact]
    public void FreshModelsGiveFiniteLogits()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var model = SwinTransformer.SwinT();
        Assert.DoesNotContain(model.parameters(), p => p.isnan().any().item<bool>() || p.isinf().any().item<bool>());
        model.eval();
        Assert.True(model.call(randn(1, 3, 64, 64)).isfinite().all().item<bool>());
    }

    public static TheoryData<string> AllBuilders => new(Builders.Keys);

    /// <summary>Every builder at 224 pixels (Swin's maps are then window multiples, 56→28→14→7).</summary>
    [AllFamiliesTheory]
    [MemberData(nameof(AllBuilders))]
    public void EveryBuilderGivesTorchvisionsLogits(string builder) => CheckParity(builder, 224);

    private void CheckParity(string builder, int size)
    {
        PythonReference.RunScript(Script, "export", builder, _dir, size.ToString(CultureInfo.InvariantCulture));

        using var scope = NewDisposeScope();
        using var model = Builders[builder]();
        LoadStrict(model, StateDictFile.Read(Path.Combine(_dir, "model.pth")));
        model.eval();
        var io = StateDictFile.Read(Path.Combine(_dir, "io.pth"));
        using (no_grad())
        {
            var logits = model.call(io["input"]);
            Assert.Equal(io["logits"].shape, logits.shape);
            double difference = (logits - io["logits"]).abs().max().item<float>();
            Assert.True(difference <= Tolerance, $"{builder}: max |Δlogit| = {difference}");
        }

        var written = Path.Combine(_dir, "ours.pth");
        StateDictFile.Write(model.state_dict(), written, StateDictFormat.PyTorch);
        double inPyTorch = double.Parse(PythonReference.RunScript(Script, "check", builder, written, Path.Combine(_dir, "io.pth")),
            CultureInfo.InvariantCulture);
        Assert.True(inPyTorch <= Tolerance, $"{builder}: PyTorch on our state dict, max |Δlogit| = {inPyTorch}");
    }

    /// <summary>torch's load_state_dict(strict=True): the same keys with the same shapes, buffers included.</summary>
    private static void LoadStrict(nn.Module model, Dictionary<string, Tensor> checkpoint)
    {
        var target = model.state_dict();
        Assert.Equal(checkpoint.Keys.Order(StringComparer.Ordinal), target.Keys.Order(StringComparer.Ordinal));
        using var _ = no_grad();
        foreach (var (key, tensor) in checkpoint)
        {
            Assert.True(tensor.shape.SequenceEqual(target[key].shape),
                $"{key}: checkpoint [{string.Join(", ", tensor.shape)}], model [{string.Join(", ", target[key].shape)}]");
            Assert.Equal(tensor.dtype, target[key].dtype);
            target[key].copy_(tensor);
        }
    }
}
