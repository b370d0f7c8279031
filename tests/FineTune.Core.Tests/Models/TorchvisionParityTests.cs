using System.Globalization;
using FineTune.Core.Models;
using FineTune.Core.Tests.Reference;
using FineTune.Core.Weights;
using FineTune.Testing;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Models;

/// <summary>
/// Each family against torchvision itself: PyTorch builds the model and its logits, we load its state dict
/// and must produce the same logits; a state dict we write must load in PyTorch and do the same.
/// </summary>
public sealed class TorchvisionParityTests : IDisposable
{
    private const double Tolerance = 1e-4;
    private readonly string _dir = Directory.CreateTempSubdirectory("parity-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// Every builder torchvision has (the CNTK ResNet18 is checked against ONNX Runtime instead); in CI the smallest of each
    /// architecture (<see cref="AllFamilies.OnePerArchitecture"/>).
    /// </summary>
    public static TheoryData<string> Families => new(AllFamilies.OnePerArchitecture(ModelRegistry.Families
        .Where(f => !f.Name.StartsWith(CntkResNet18.FamilyName, StringComparison.Ordinal))).Select(f => f.Name));

    [Theory]
    [MemberData(nameof(Families))]
    public void TorchvisionCheckpointGivesTorchvisionLogitsAndOurStateDictGivesThemInPyTorch(string name)
    {
        var family = ModelRegistry.Get(name);
        // Small inputs keep the big families fast; inception needs at least 75 pixels.
        int size = name == "inception_v3" ? 80 : SmallModels.SmallestInput(family);
        PythonReference.Run("export", name, _dir, size.ToString(CultureInfo.InvariantCulture));

        using var scope = NewDisposeScope();
        using var model = LoadReference(family.For(SmallModels.PreprocessingAt(family, size)));
        var io = StateDictFile.Read(Path.Combine(_dir, "io.pth"));
        using (no_grad())
        {
            var logits = model.Forward(io["input"]);
            Assert.Equal(io["logits"].shape, logits.shape);
            double difference = (logits - io["logits"]).abs().max().item<float>();
            Assert.True(difference <= Tolerance, $"{name}: max |Δlogit| = {difference}");
        }

        var written = Path.Combine(_dir, "ours.pth");
        StateDictFile.Write(model.Module.state_dict(), written, StateDictFormat.PyTorch);
        double inPyTorch = double.Parse(PythonReference.Run("check", name, "1000", written, Path.Combine(_dir, "io.pth")),
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(inPyTorch <= Tolerance, $"{name}: PyTorch on our state dict, max |Δlogit| = {inPyTorch}");
    }

    private FineTuneModel LoadReference(ModelFamily family)
    {
        var model = FineTuneModel.Create(family, numClasses: 1000, seed: 5);
        PretrainedWeights.LoadAll(model, StateDictFile.Read(Path.Combine(_dir, "model.pth")));
        model.EvalMode();
        return model;
    }
}
