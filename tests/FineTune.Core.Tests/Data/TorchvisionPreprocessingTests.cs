using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Tests.Reference;
using Xunit.Abstractions;

namespace FineTune.Core.Tests.Data;

/// <summary>
/// The user's path against PyTorch's: image files of every kind, turned into model inputs by our loader and by
/// torchvision 0.14 + Pillow (preprocessing_reference.py), compared value by value in normalised units.
/// Measured here: every file, lossy or not, gives Pillow's pixels exactly (max difference ~1e-7).
/// </summary>
public sealed class TorchvisionPreprocessingTests(ITestOutputHelper output) : IDisposable
{
    private static readonly string[] Photos = ["animals/insects/bee.png", "military/paratrooper.png"];
    private readonly string _dir = Directory.CreateTempSubdirectory("corpus-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void EveryKindOfFileGivesTorchvisionsInput()
    {
        var photos = Photos.Select(p => Path.Combine(TuxPaintStamps.Root, p)).ToArray();
        var files = PythonReference.RunScript(PreprocessingScript, "corpus", _dir, photos[0], photos[1])
            .Split('\n').Select(name => Path.Combine(_dir, name)).ToArray();
        Assert.True(files.Length >= 24, $"only {files.Length} corpus files");
        PythonReference.RunScript(PreprocessingScript, ["tensors", "256", "224", .. files]);

        var failures = new List<string>();
        foreach (var resize in new[] { ResizeMode.CenterCrop, ResizeMode.Pad })
        {
            var preprocessing = Preprocessing.ImageNet() with { Resize = resize };
            foreach (var file in files)
            {
                var expected = ReadFloats($"{file}.{(resize == ResizeMode.Pad ? "pad" : "crop")}.f32");
                var actual = ImageLoader.Load(file, preprocessing).data<float>().ToArray();
                Assert.Equal(expected.Length, actual.Length);
                double mean = 0, max = 0;
                for (int i = 0; i < expected.Length; i++)
                {
                    double difference = Math.Abs(expected[i] - actual[i]);
                    mean += difference;
                    max = Math.Max(max, difference);
                }
                mean /= expected.Length;
                output.WriteLine($"{resize,-10} {Path.GetFileName(file),-28} mean {mean:E2} max {max:E2}");
                // Lossless files give Pillow's pixels exactly (only float rounding remains); lossy ones may meet
                // another decoder build, so they get the looser bound.
                var (meanBound, maxBound) = IsLossy(file) ? (0.01, 0.1) : (1e-6, 1e-5);
                if (mean > meanBound || max > maxBound) failures.Add($"{resize} {Path.GetFileName(file)}: mean {mean:E2}, max {max:E2}");
            }
        }
        Assert.Empty(failures);
    }

    private static bool IsLossy(string file) => file.EndsWith(".jpg", StringComparison.Ordinal) || file.EndsWith("lossy.webp", StringComparison.Ordinal);

    private static string PreprocessingScript => Path.Combine(AppContext.BaseDirectory, "Reference", "preprocessing_reference.py");

    private static float[] ReadFloats(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var floats = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, floats, 0, bytes.Length);
        return floats;
    }
}
