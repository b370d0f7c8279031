using System.Globalization;
using FineTune.Core.Models;
using FineTune.Core.Tests.Reference;
using FineTune.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Models;

/// <summary>
/// SqueezeNet, ShuffleNet V2 and MNASNet against torchvision 0.14 itself: PyTorch builds each with random weights
/// and randomised BatchNorm statistics; its state dict must have exactly our keys and shapes, load into our module
/// and give PyTorch's logits; the state dict we write must give them in PyTorch. One builder per family in CI,
/// every builder with FINETUNE_ALL_FAMILIES=1.
/// </summary>
public sealed class CompactFamiliesParityTests(ITestOutputHelper output) : IDisposable
{
    private const double Tolerance = 1e-4;

    /// <summary>Odd, so the ceil-mode and padded poolings and the stride-2 convolutions meet ragged edges.</summary>
    private const int InputSize = 67;

    private static readonly Dictionary<string, Func<nn.Module<Tensor, Tensor>>> Builders =
        SqueezeNet.Builders.Select(b => (b.Name, Create: (Func<nn.Module<Tensor, Tensor>>)b.Create))
            .Concat(ShuffleNetV2.Builders.Select(b => (b.Name, Create: (Func<nn.Module<Tensor, Tensor>>)b.Create)))
            .Concat(MnasNet.Builders.Select(b => (b.Name, Create: (Func<nn.Module<Tensor, Tensor>>)b.Create)))
            .ToDictionary(b => b.Name, b => b.Create);

    /// <summary>One per family: MNASNet 0.75 because its widths take every branch of the rounding to multiples of 8.</summary>
    private static readonly string[] InCi = ["squeezenet1_1", "shufflenet_v2_x0_5", "mnasnet0_75"];

    private readonly string _dir = Directory.CreateTempSubdirectory("parity-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> OnePerFamily => new(InCi);

    public static TheoryData<string> TheOthers => new(Builders.Keys.Except(InCi));

    // Registered now: TorchvisionParityTests checks the smallest of each family in CI, through FineTuneModel.
    [AllFamiliesTheory]
    [MemberData(nameof(OnePerFamily))]
    public void OneBuilderPerFamilyMatchesTorchvision(string name) => AssertMatchesTorchvision(name);

    [AllFamiliesTheory]
    [MemberData(nameof(TheOthers))]
    public void EveryOtherBuilderMatchesTorchvision(string name) => AssertMatchesTorchvision(name);

    private static string CheckScript => Path.Combine(AppContext.BaseDirectory, "Reference", "compact_families_reference.py");

    private void AssertMatchesTorchvision(string name)
    {
        PythonReference.Run("export", name, _dir, InputSize.ToString(CultureInfo.InvariantCulture));
        using var scope = NewDisposeScope();
        using var module = Builders[name]();
        var reference = StateDictFile.Read(Path.Combine(_dir, "model.pth"));

        // Strict, as torchvision's load_state_dict: the same keys, each with the same shape.
        var ours = module.state_dict();
        Assert.Equal(reference.Keys.Order(StringComparer.Ordinal), ours.Keys.Order(StringComparer.Ordinal));
        var wrongShape = reference.Where(kv => !kv.Value.shape.SequenceEqual(ours[kv.Key].shape)).Select(kv => kv.Key).ToList();
        Assert.Empty(wrongShape);
        module.load_state_dict(reference, strict: true);
        module.eval();

        var io = StateDictFile.Read(Path.Combine(_dir, "io.pth"));
        using (no_grad())
        {
            var logits = module.call(io["input"]);
            Assert.Equal(io["logits"].shape, logits.shape);
            double difference = (logits - io["logits"]).abs().max().item<float>();
            output.WriteLine($"{name}: {ours.Count} tensors, max |Δlogit| = {difference:E2} (logits up to {io["logits"].abs().max().item<float>():F2})");
            Assert.True(difference <= Tolerance, $"{name}: max |Δlogit| = {difference}");
        }

        var written = Path.Combine(_dir, "ours.pth");
        StateDictFile.Write(module.state_dict(), written, StateDictFormat.PyTorch);
        double inPyTorch = double.Parse(PythonReference.RunScript(CheckScript, "check", name, "1000", written, Path.Combine(_dir, "io.pth")), CultureInfo.InvariantCulture);
        Assert.True(inPyTorch <= Tolerance, $"{name}: PyTorch on our state dict, max |Δlogit| = {inPyTorch}");
    }
}
