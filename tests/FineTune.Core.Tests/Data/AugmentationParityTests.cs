using System.Globalization;
using FineTune.Core.Data;
using FineTune.Core.Tests.Reference;
using Xunit.Abstractions;

namespace FineTune.Core.Tests.Data;

/// <summary>
/// Every geometric and colour op of train-time augmentation against torchvision 0.14 + Pillow 9.4
/// (augmentation_reference.py) on fixed parameters, on real photos of two shapes (a square one for Pillow's
/// quarter-turn transposes): byte for byte, no tolerance.
/// </summary>
public sealed class AugmentationParityTests(ITestOutputHelper output) : IDisposable
{
    private static readonly string[] Photos = ["animals/insects/bee.png", "military/paratrooper.png"];
    private readonly string _dir = Directory.CreateTempSubdirectory("augment-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void EveryOpGivesTorchvisionsPixels()
    {
        var photos = Photos.Select(p => Path.Combine(TuxPaintStamps.Root, p)).ToArray();
        var cases = PythonReference.RunScript(Script, ["ops", _dir, .. photos]).Split('\n');
        Assert.True(cases.Length >= 35, $"only {cases.Length} cases");

        var failures = new List<string>();
        foreach (var photo in Enumerable.Range(0, photos.Length))
        {
            foreach (var shape in new[] { "wide", "square" })
            {
                string name = $"{photo}-{shape}";
                var image = ImageLoader.Decode(Path.Combine(_dir, name + ".png"));
                for (int i = 0; i < cases.Length; i++)
                {
                    var expected = File.ReadAllBytes(Path.Combine(_dir, $"{name}.{i}.rgb"));
                    var actual = Apply(image, cases[i].Split(' '));
                    int differing = expected.Length == actual.Pixels.Length ? expected.Where((b, j) => b != actual.Pixels[j]).Count() : -1;
                    if (differing != 0) failures.Add($"{name} {cases[i]}: {(differing < 0 ? "another size" : $"{differing} of {expected.Length} bytes differ")}");
                }
            }
        }
        output.WriteLine($"{cases.Length} cases × {photos.Length * 2} images");
        Assert.Empty(failures);
    }

    [Fact]
    public void TrivialAugmentWideBinsAreTorchvisions()
    {
        foreach (var line in PythonReference.RunScript(Script, "tables").Split('\n'))
        {
            var parts = line.Split(' ');
            var op = Enum.Parse<AugmentOp>(parts[0]);
            var expected = parts[1..].Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(TrivialAugmentWide.Bins, expected.Length);
            for (int bin = 0; bin < expected.Length; bin++)
                Assert.True(expected[bin] == TrivialAugmentWide.Magnitude(op, bin), $"{op} bin {bin}: {TrivialAugmentWide.Magnitude(op, bin):R}, torchvision {expected[bin]:R}");
        }
    }

    private static RgbImage Apply(RgbImage image, string[] c)
    {
        int At(int i) => int.Parse(c[i], CultureInfo.InvariantCulture);
        return c[0] switch
        {
            "hflip" => ImageOps.HorizontalFlip(image),
            "crop" => ImageOps.ResizedCrop(image, At(1), At(2), At(3), At(4), At(6), At(5), Interpolations.Choices.Parse(c[7])),
            "op" => AutoAugment.ApplyOp(image, Enum.Parse<AugmentOp>(c[1]), double.Parse(c[2], CultureInfo.InvariantCulture)),
            _ => throw new ArgumentException($"unknown case {string.Join(' ', c)}"),
        };
    }

    private static string Script => Path.Combine(AppContext.BaseDirectory, "Reference", "augmentation_reference.py");
}
