// Save + load of a resnet50-sized checkpoint through the checkpoint store (manifest, SHA-256 verification),
// to the local folder and to Azurite, against PyTorch's torch.save/torch.load of the same model on the same
// disk, measured in the same run. Prints times and ratios; asserts nothing.
// usage: CheckpointBench [repeats=3] [azurite connection string=UseDevelopmentStorage=true]
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Azure.Storage.Blobs;
using FineTune.Core.Models;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using Microsoft.Extensions.Logging.Abstractions;

int repeats = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 3;
string connection = args.Length > 1 ? args[1] : "UseDevelopmentStorage=true";
string folder = Directory.CreateTempSubdirectory("checkpoint-bench-").FullName;
var container = new BlobContainerClient(connection, "bench-" + Guid.NewGuid().ToString("N"));
try
{
    byte[] weights;
    using (var model = FineTuneModel.Create(ModelRegistry.Get("resnet50"), 1000, seed: 0))
    using (var stream = new MemoryStream())
    {
        StateDictFile.Write(model.Module.state_dict(), stream, StateDictFormat.Safetensors);
        weights = stream.ToArray();
    }
    var parts = new Dictionary<string, byte[]> { ["model.safetensors"] = weights };

    var local = await MeasureAsync(new LocalFolderArtifactStore(Path.Combine(folder, "store")), parts, repeats);
    var blob = await MeasureAsync(new BlobArtifactStore(container), parts, repeats);

    var python = Process.Start(new ProcessStartInfo("/usr/bin/python3",
        [Path.Combine(AppContext.BaseDirectory, "torch_save_load.py"), folder, repeats.ToString(CultureInfo.InvariantCulture)])
    { RedirectStandardOutput = true })!;
    var reference = python.StandardOutput.ReadToEnd().Split(' ').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
    python.WaitForExit();

    Console.WriteLine($"resnet50 checkpoint: {weights.Length / 1e6:F1} MB (safetensors), best of {repeats}");
    Console.WriteLine($"{"",-34}{"save s",8}{"load s",8}{"save ratio",12}{"load ratio",12}");
    Print("PyTorch torch.save/load, local", reference[0], reference[1]);
    Print("checkpoint store, local folder", local.Save, local.Load);
    Print("checkpoint store, Azurite blob", blob.Save, blob.Load);
    return 0;

    void Print(string name, double save, double load) =>
        Console.WriteLine($"{name,-34}{save,8:F3}{load,8:F3}{save / reference[0],12:F2}{load / reference[1],12:F2}");
}
finally
{
    Directory.Delete(folder, recursive: true);
    await container.DeleteIfExistsAsync();
}

static async Task<(double Save, double Load)> MeasureAsync(IArtifactStore store, Dictionary<string, byte[]> parts, int repeats)
{
    var checkpoints = new CheckpointStore(store, NullLogger<CheckpointStore>.Instance);
    double save = double.MaxValue, load = double.MaxValue;
    for (int i = 0; i < repeats; i++)
    {
        var clock = Stopwatch.StartNew();
        await checkpoints.SaveAsync("bench", i, parts, JsonSerializer.SerializeToElement(new { i }), default);
        save = Math.Min(save, clock.Elapsed.TotalSeconds);
        clock.Restart();
        var loaded = await checkpoints.LoadLatestAsync("bench", default) ?? throw new InvalidOperationException("nothing saved");
        load = Math.Min(load, clock.Elapsed.TotalSeconds);
        if (loaded.Manifest.Sequence != i) throw new InvalidOperationException("loaded the wrong checkpoint");
    }
    return (save, load);
}
