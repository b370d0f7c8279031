using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;

namespace FineTune.Cli.Tests.Reference;

/// <summary>
/// One PyTorch process (Debian's python3-torch, run as /usr/bin/python3) running predict_parity.py for every family
/// of a test class: importing torch and torchvision once instead of per family.
/// </summary>
public sealed class PyTorchParity : IDisposable
{
    private const string Interpreter = "/usr/bin/python3";
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();

    public PyTorchParity()
    {
        var start = new ProcessStartInfo(Interpreter)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.Combine(AppContext.BaseDirectory, "Reference"),
        };
        start.ArgumentList.Add("predict_parity.py");
        _process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {Interpreter}");
        _process.ErrorDataReceived += (_, e) =>
        {
            lock (_stderr) _stderr.AppendLine(e.Data);
        };
        _process.BeginErrorReadLine();
    }

    /// <summary>Writes torchvision's <paramref name="family"/>, seeded, with BatchNorm statistics of <paramref name="images"/>.</summary>
    public void Export(string family, string path, int resize, int crop, IEnumerable<string> images) =>
        Ask(new JsonObject { ["export"] = family, ["out"] = path, ["resize"] = resize, ["crop"] = crop, ["images"] = Array(images) });

    /// <summary>Per image, the class probabilities of the published safetensors loaded into torchvision's family.</summary>
    public double[][] Predict(string family, string weights, int classes, int resize, int crop, string? bgrMeanImage, IEnumerable<string> images)
    {
        var answer = Ask(new JsonObject
        {
            ["predict"] = family,
            ["weights"] = weights,
            ["classes"] = classes,
            ["resize"] = resize,
            ["crop"] = crop,
            ["bgrMeanImage"] = bgrMeanImage,
            ["images"] = Array(images),
        });
        return answer["probabilities"]!.AsArray().Select(row => row!.AsArray().Select(p => p!.GetValue<double>()).ToArray()).ToArray();
    }

    private JsonObject Ask(JsonObject request)
    {
        _process.StandardInput.WriteLine(request.ToJsonString());
        _process.StandardInput.Flush();
        string? line = _process.StandardOutput.ReadLine();
        if (line is null)
        {
            _process.WaitForExit();
            lock (_stderr)
                throw new InvalidOperationException($"{Interpreter} predict_parity.py exited ({_process.ExitCode}); is python3-torchvision installed?\n{_stderr}");
        }
        var answer = JsonNode.Parse(line)!.AsObject();
        if (answer["error"] is { } error) throw new InvalidOperationException($"PyTorch: {error.GetValue<string>()}");
        return answer;
    }

    private static JsonArray Array(IEnumerable<string> items) => new(items.Select(i => JsonValue.Create(i)).ToArray<JsonNode?>());

    public void Dispose()
    {
        _process.StandardInput.Close();
        if (!_process.WaitForExit(TimeSpan.FromSeconds(10))) _process.Kill();
        _process.Dispose();
    }
}
