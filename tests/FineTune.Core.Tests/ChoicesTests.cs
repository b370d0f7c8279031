using System.Text.Json;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Training;
using static TorchSharp.torch;

namespace FineTune.Core.Tests;

public class ChoicesTests
{
    [Fact]
    public void EachChoiceIsReadAndWrittenByItsTableName()
    {
        Assert.Equal("sgd, adam or adamw", Optimizers.Choices.Allowed);
        Assert.Equal("constant, step or cosine", LearningRateSchedule.Choices.Allowed);
        Assert.Equal("val_loss or val_accuracy", StoppingMetrics.Choices.Allowed);
        Assert.Equal("crop or pad", ResizeModes.Choices.Allowed);
        Assert.Equal("auto, cpu or cuda", TorchDevice.Choices.Allowed);

        Assert.Equal("\"adamw\"", JsonSerializer.Serialize(OptimizerKind.AdamW));
        Assert.Equal(ResizeMode.CenterCrop, JsonSerializer.Deserialize<ResizeMode>("\"crop\""));
        Assert.Equal(StoppingMetric.ValidationAccuracy, JsonSerializer.Deserialize<StoppingMetric>("\"val_accuracy\""));
        Assert.Equal("must be sgd, adam or adamw", Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<OptimizerKind>("\"lion\"")).Message);
        Assert.Equal("must be crop or pad", Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ResizeMode>("1")).Message);
    }

    [Fact]
    public void AFreezeModeIsReadAndWrittenAsItsText()
    {
        Assert.Equal("\"last:2\"", JsonSerializer.Serialize(FreezeMode.Last(2)));
        Assert.Equal(FreezeMode.Full, JsonSerializer.Deserialize<FreezeMode>("\"full\""));
        Assert.Contains(FreezeMode.Forms, Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<FreezeMode>("\"last:0\"")).Message);
    }

    [Fact]
    public void ATableNeedsOneNamedEntryPerMember()
    {
        Assert.Throws<ArgumentException>(() => new ChoiceTable<ResizeMode, Choice<ResizeMode>>(new Choice<ResizeMode>(ResizeMode.Pad, "pad", "")));
        Assert.Throws<ArgumentException>(() => new ChoiceTable<ResizeMode, Choice<ResizeMode>>(
            new Choice<ResizeMode>(ResizeMode.Pad, "pad", ""), new Choice<ResizeMode>(ResizeMode.CenterCrop, "pad", "")));
    }

    public static TheoryData<string> OptimizerNames => [.. Optimizers.Choices.All.Select(c => c.Name)];

    /// <summary>Every optimizer in the table is built and moves the parameters downhill.</summary>
    [Theory]
    [MemberData(nameof(OptimizerNames))]
    public void EveryOptimizerTakesAStepDownhill(string name)
    {
        var weights = new TorchSharp.Modules.Parameter(tensor(new[] { 1f, -2f, 3f }));
        var options = new TrainingOptions { Optimizer = Optimizers.Choices.Parse(name), LearningRate = 0.1 };
        using var optimizer = Optimizers.Create([weights], options);
        double before = weights.square().sum().item<float>();
        for (int step = 0; step < 3; step++)
        {
            optimizer.zero_grad();
            weights.square().sum().backward();
            optimizer.step();
        }
        Assert.True(weights.square().sum().item<float>() < before, $"{name} did not lower the loss");
    }
}
