using FineTune.Core.Data;
using FineTune.Core.Tests.Reference;
using Xunit.Abstractions;

namespace FineTune.Core.Tests.Data;

/// <summary>
/// <see cref="PilResize"/> against torchvision 0.14's <c>Resize</c> on PIL images (Pillow 9, resize_reference.py):
/// real photos and a worst-case pattern, shrunk, enlarged, squashed and stretched to odd sizes, in one axis and
/// both, with every interpolation. The bytes must be equal.
/// </summary>
public sealed class PilResizeTests(ITestOutputHelper output) : IDisposable
{
    private static readonly string[] Photos = ["animals/insects/bee.png", "military/paratrooper.png", "food/fruit/banana.png"];

    /// <summary>Down (torchvision's short-side 256, odd, 1 pixel, far past the filter's support), up, one axis only, mixed.</summary>
    private static readonly (int Width, int Height)[] PhotoSizes =
        [(319, 256), (224, 224), (97, 131), (1, 1), (1, 300), (3, 2), (512, 37), (13, 1000), (1203, 1001), (400, 1500), (1500, 90)];

    /// <summary>A small crop enlarged many times: bicubic's overshoot at the cut-out's edges must be clipped as Pillow clips.</summary>
    private static readonly (int Width, int Height)[] CropSizes = [(301, 211), (45, 9), (31, 170), (7, 5), (224, 224)];

    private readonly string _dir = Directory.CreateTempSubdirectory("resize-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void EveryInterpolationGivesPillowsBytes()
    {
        var sources = new List<(string Name, RgbImage Image, (int, int)[] Sizes)>();
        foreach (var photo in Photos)
        {
            var image = ImageLoader.Decode(Path.Combine(TuxPaintStamps.Root, photo));
            sources.Add((Path.GetFileNameWithoutExtension(photo), image, PhotoSizes));
            sources.Add((Path.GetFileNameWithoutExtension(photo) + "-crop", image.Crop(image.Width / 2 - 15, image.Height / 2 - 8, 31, 17), CropSizes));
        }
        sources.Add(("checkerboard", Checkerboard(8, 6), [(57, 61), (3, 3), (8, 13), (800, 600)]));

        var failures = new List<string>();
        foreach (var (name, image, sizes) in sources)
        {
            var path = Path.Combine(_dir, name);
            File.WriteAllBytes(path, image.Pixels);
            var targets = Enum.GetValues<Interpolation>()
                .SelectMany(i => sizes.Select(s => $"{Interpolations.Choices[i].Name}:{s.Item1}x{s.Item2}")).ToArray();
            PythonReference.RunScript(Script, [path, $"{image.Width}", $"{image.Height}", .. targets]);
            foreach (var interpolation in Enum.GetValues<Interpolation>())
            {
                foreach (var (width, height) in sizes)
                {
                    string interpolationName = Interpolations.Choices[interpolation].Name;
                    var expected = File.ReadAllBytes($"{path}.{interpolationName}.{width}x{height}");
                    var actual = PilResize.Resize(image, width, height, interpolation).Pixels;
                    int differing = expected.Length == actual.Length ? expected.Where((b, i) => b != actual[i]).Count() : -1;
                    output.WriteLine($"{name,-18} {image.Width,4}x{image.Height,-4} -> {width,4}x{height,-4} {interpolationName,-8} differing bytes: {differing}");
                    if (differing != 0) failures.Add($"{name} {width}x{height} {interpolationName}: {differing} bytes differ");
                }
            }
        }
        Assert.Empty(failures);
    }

    [Fact]
    public void BicubicIsNotBilinear()
    {
        var image = Checkerboard(8, 6);
        Assert.NotEqual(PilResize.Resize(image, 57, 61, Interpolation.Bilinear).Pixels, PilResize.Resize(image, 57, 61, Interpolation.Bicubic).Pixels);
    }

    [Fact]
    public void InterpolationsAreNamedAsInTorchvision() =>
        Assert.Equal(["bilinear", "bicubic"], Interpolations.Choices.All.Select(c => c.Name));

    /// <summary>Black and white squares with a red and a blue one: every edge overshoots both ways under bicubic.</summary>
    private static RgbImage Checkerboard(int width, int height)
    {
        var image = new RgbImage(width, height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                byte v = (byte)((x + y) % 2 == 0 ? 255 : 0);
                image.Pixels[3 * (y * width + x)] = v;
                image.Pixels[3 * (y * width + x) + 1] = (byte)(x == 2 && y == 3 ? 0 : v);
                image.Pixels[3 * (y * width + x) + 2] = (byte)(x == 5 && y == 1 ? 255 : v);
            }
        return image;
    }

    private static string Script => Path.Combine(AppContext.BaseDirectory, "Reference", "resize_reference.py");
}
