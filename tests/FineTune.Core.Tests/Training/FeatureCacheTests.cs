using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Tests.Models;
using FineTune.Core.Training;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Training;

/// <summary>
/// The feature pass spreads its batches over threads of one core each: every image must still get the features of its
/// own forward pass, in order, whatever thread ran it, and a failure must end the pass as itself.
/// </summary>
public sealed class FeatureCacheTests : IDisposable
{
    private static readonly ModelFamily Resnet18 = ModelRegistry.Get("resnet18");
    private readonly string _dir = Directory.CreateTempSubdirectory("feature-cache-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void EveryPhotoGetsTheFeaturesOfItsOwnForwardPassInOrder()
    {
        Assert.True(OpenMpThreads.Available, "libtorch's OpenMP runtime was not found: the pass would run on one thread");
        var preprocessing = SmallModels.PreprocessingAt(Resnet18, 64);
        // 11 photos in batches of 3: four batches, the last one short, over the threads.
        var samples = TuxPaintStamps.Categories.SelectMany(c => TuxPaintStamps.Images(c, 3)).Take(11).Select((p, i) => new ImageSample(p, i % 3)).ToList();
        using var model = FineTuneModel.Create(Resnet18, 3, seed: 4);
        using var scope = NewDisposeScope();
        int threadsBefore = get_num_threads();

        var features = FeatureCache.Compute(model, new FileImageSource(samples, preprocessing), batchSize: 3, default);

        Assert.Equal(threadsBefore, get_num_threads());
        Assert.Equal([samples.Count, 512L], features.shape);
        using var noGrad = no_grad();
        for (int i = 0; i < samples.Count; i++)
        {
            var alone = model.Features(ImageLoader.Load(samples[i].Path, preprocessing).unsqueeze(0))[0];
            double worst = (features[i] - alone).abs().max().item<float>();
            Assert.True(worst <= 1e-4 * Math.Max(1, alone.abs().max().item<float>()), $"photo {i}: max difference {worst:E2} from its own forward pass");
        }
    }

    [Fact]
    public void AFileThatCannotBeDecodedEndsThePassAsItself()
    {
        var photos = TuxPaintStamps.Images("animals", 6).ToList();
        string bad = Path.Combine(_dir, "truncated.png");
        File.WriteAllBytes(bad, File.ReadAllBytes(photos[0])[..100]);
        var samples = photos.Append(bad).Select(p => new ImageSample(p, 0)).ToList();
        var source = new FileImageSource(samples, SmallModels.PreprocessingAt(Resnet18, 64));
        using var model = FineTuneModel.Create(Resnet18, 2, seed: 4);
        using var scope = NewDisposeScope();

        var failure = Assert.Throws<InvalidImageException>(() => FeatureCache.Compute(model, source, batchSize: 2, default));

        Assert.Contains("truncated.png", failure.Message);
        // Nothing of the failed pass is left running: the next one computes all it is given.
        Assert.Equal(6, FeatureCache.Compute(model, new FileImageSource(samples.Take(6).ToList(), SmallModels.PreprocessingAt(Resnet18, 64)), batchSize: 2, default).shape[0]);
    }

    [Fact]
    public void OneThreadAppliesToTheCallingThreadOnlyAndEnds()
    {
        int threads = get_num_threads();
        using (OpenMpThreads.OneThread())
        {
            Assert.Equal(1, get_num_threads());
            int other = 0;
            var thread = new Thread(() => other = get_num_threads());
            thread.Start();
            thread.Join();
            Assert.Equal(threads, other);
        }
        Assert.Equal(threads, get_num_threads());
    }
}
