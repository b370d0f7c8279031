using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using FineTune.Core.Models;
using FineTune.Core.Weights;

namespace FineTune.Cli;

/// <summary>
/// <c>finetune demo</c>: the main job. Fine-tunes the bundled, really pretrained ImageNet backbone
/// (resnet18-cntk) on real photos, Debian's tuxpaint-stamps-default, five categories, no Azure and no download.
/// </summary>
internal static class DemoCommand
{
    public const string Stamps = "/usr/share/tuxpaint/stamps";
    public static readonly string[] Categories = ["animals", "food", "household", "plants", "town"];
    private const int PhotosPerCategory = 30;

    public static Command Create(TextWriter output, TextWriter error)
    {
        var epochs = CliOptions.Integer("--epochs", "Passes over the photos.", 15);
        var command = new Command("demo", "Fine-tune bundled ImageNet weights on real photos (Debian's tuxpaint-stamps-default).")
        {
            epochs, TrainCommand.Work,
        };
        command.SetAction(async (result, cancellationToken) =>
        {
            if (!Directory.Exists(Stamps) && !await InstallPhotosAsync(output, error, cancellationToken)) return ExitCodes.MissingPhotos;
            string work = Path.GetFullPath(result.GetValue(TrainCommand.Work)!);
            string dataset = BuildDataset(Path.Combine(work, "demo", "photos"));
            output.WriteLine($"demo: {CntkResNet18.FamilyName} (bundled ImageNet weights) on {Categories.Length} photo categories from {Stamps}");
            var job = new JsonObject
            {
                ["jobId"] = $"demo-{result.GetValue(epochs)}",
                ["model"] = CntkResNet18.FamilyName,
                ["dataset"] = new JsonObject { ["location"] = dataset, ["resize"] = ResizeModes.Choices[ResizeMode.Pad].Name },
                ["training"] = new JsonObject { ["epochs"] = result.GetValue(epochs), ["batchSize"] = 4 },
            };
            return await TrainCommand.RunAsync(job, new LocalRunner(work, storage: null, AzureStorageSidecar.DefaultTaskHub, output, error), error, cancellationToken);
        });
        return command;
    }

    /// <summary>
    /// An ImageFolder of copies of the first photos (drawings left out) of each category: copies, since a dataset
    /// never follows a link out of its folder.
    /// </summary>
    private static string BuildDataset(string root)
    {
        foreach (var category in Categories)
        {
            string folder = Directory.CreateDirectory(Path.Combine(root, category)).FullName;
            var photos = Directory.EnumerateFiles(Path.Combine(Stamps, category), "*.png", SearchOption.AllDirectories)
                .Where(p => !p.Contains("/cartoon/", StringComparison.Ordinal)).Order(StringComparer.Ordinal).Take(PhotosPerCategory);
            foreach (var photo in photos)
            {
                string copy = Path.Combine(folder, Path.GetRelativePath(Path.Combine(Stamps, category), photo).Replace('/', '_'));
                // An older demo folder holds links: each is replaced by its copy.
                if (!File.Exists(copy) || new FileInfo(copy).LinkTarget is not null) File.Copy(photo, copy, overwrite: true);
            }
        }
        return root;
    }

    private static async Task<bool> InstallPhotosAsync(TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        const string install = "apt-get install -y tuxpaint-stamps-default";
        if (Environment.UserName != "root")
        {
            error.WriteLine($"the demo photos are missing; install them with: sudo {install}");
            return false;
        }
        output.WriteLine($"installing the demo photos: {install}");
        foreach (var arguments in new[] { "update -qq", "install -y -qq tuxpaint-stamps-default" })
        {
            using var apt = Process.Start(new ProcessStartInfo("apt-get", arguments) { Environment = { ["DEBIAN_FRONTEND"] = "noninteractive" } })!;
            await apt.WaitForExitAsync(cancellationToken);
            if (apt.ExitCode != 0)
            {
                error.WriteLine($"apt-get {arguments} failed ({apt.ExitCode}); install them with: {install}");
                return false;
            }
        }
        return Directory.Exists(Stamps);
    }
}
