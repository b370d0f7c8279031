using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using FineTune.Storage.Checkpoints;
using static TorchSharp.torch;

namespace FineTune.Storage.Tests;

/// <summary>
/// A run whose process state is thrown away after a random step and rebuilt from its checkpoints in storage
/// ends with the same weights, byte for byte, as a run that was never interrupted.
/// </summary>
public sealed class TrainingResumeTests : IAsyncLifetime
{
    private static readonly ModelFamily Family = ModelRegistry.Get("resnet18");
    private static readonly Preprocessing Small = Family.Preprocessing with { ResizeSize = 72, CropSize = 64 };
    private static readonly TrainingOptions Options = new()
    {
        Epochs = 2,
        BatchSize = 3,
        Seed = 17,
        Schedule = ScheduleKind.Cosine,
        WarmupSteps = 2,
        Optimizer = OptimizerKind.Adam,
        Augmentation = new Augmentation(ColorJitter: 0.3f),
    };
    private static readonly string[] Categories = ["animals", "food"];
    private readonly string _root = Directory.CreateTempSubdirectory("resume-").FullName;
    private readonly Azure.Storage.Blobs.BlobContainerClient _container = Azurite.NewContainer();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        Directory.Delete(_root, recursive: true);
        await _container.DeleteIfExistsAsync();
    }

    [Theory]
    [InlineData("local", 1)]
    [InlineData("blob", 2)]
    public async Task RunKilledAtRandomStepsEndsWithIdenticalWeights(string kind, int seed)
    {
        IArtifactStore store = kind == "blob" ? new BlobArtifactStore(_container) : new LocalFolderArtifactStore(_root);
        var checkpoints = new CheckpointStore(store, new RecordingLogger<CheckpointStore>());
        var source = new FileImageSource(Samples(), Small, Options.Augmentation);

        byte[] straight;
        using (var model = TrainStraight(source)) straight = Weights(model);

        var random = new Random(seed);
        byte[]? resumed = null;
        for (int restarts = 0; resumed is null; restarts++)
        {
            Assert.True(restarts < 50, "the run never finished");
            resumed = await TrainUntilKilledAsync(source, checkpoints, killAfterSteps: random.Next(1, 4));
        }

        Assert.Equal(straight, resumed);
    }

    private static FineTuneModel TrainStraight(IImageSource source)
    {
        var model = Prepare();
        using var trainer = new Trainer(model, source, Options);
        while (trainer.Position.Epoch < Options.Epochs) trainer.TrainSteps(int.MaxValue, default);
        return model;
    }

    /// <summary>A fresh "process": rebuilds from the newest checkpoint, trains a few steps saving after each, then dies. Returns the final weights once done.</summary>
    private static async Task<byte[]?> TrainUntilKilledAsync(IImageSource source, CheckpointStore checkpoints, int killAfterSteps)
    {
        using var model = Prepare();
        using var trainer = new Trainer(model, source, Options);
        var latest = await checkpoints.LoadLatestAsync("resume-job", default);
        if (latest is not null)
        {
            var progress = latest.Manifest.Metadata.Deserialize<TrainingProgress>()!;
            TrainingSnapshot.Restore(model, trainer, latest.Parts, progress.Position);
        }
        for (int step = 0; step < killAfterSteps; step++)
        {
            if (trainer.Position.Epoch == Options.Epochs) break;
            trainer.TrainSteps(1, default);
            long sequence = (long)trainer.Position.Epoch * trainer.StepsPerEpoch + trainer.Position.Step;
            await checkpoints.SaveAsync("resume-job", sequence, TrainingSnapshot.Capture(model, trainer),
                JsonSerializer.SerializeToElement(new TrainingProgress(trainer.Position, [])), default);
        }
        return trainer.Position.Epoch == Options.Epochs ? Weights(model) : null;
    }

    /// <summary>The "prepare model" step: the same family, seed and freezing every time.</summary>
    private static FineTuneModel Prepare()
    {
        var model = FineTuneModel.Create(Family, 2, seed: 3, headDropout: 0.2);
        model.Freeze(FreezeMode.Last(1));
        return model;
    }

    private static byte[] Weights(FineTuneModel model)
    {
        using var stream = new MemoryStream();
        StateDictFile.Write(model.Module.state_dict(), stream, StateDictFormat.Safetensors);
        return stream.ToArray();
    }

    private static List<ImageSample> Samples() =>
        Categories.SelectMany((category, label) =>
            Directory.EnumerateFiles(Path.Combine("/usr/share/tuxpaint/stamps", category), "*.png", SearchOption.AllDirectories)
                .Where(p => !p.Contains("/cartoon/")).Order(StringComparer.Ordinal).Take(4)
                .Select(path => new ImageSample(path, label))).ToList();
}
