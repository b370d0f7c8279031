using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace FineTune.Cli.Tests.Reference;

/// <summary>A published README's Python script, run unchanged by Debian's Python from a user's copy of the folder.</summary>
internal static partial class ReadmeScript
{
    /// <returns>per image, each class's probability</returns>
    public static List<Dictionary<string, double>> Run(string published, string copy, IReadOnlyList<string> images)
    {
        string readme = Copy(published, copy, "safetensors");
        File.WriteAllText(Path.Combine(copy, "predict.py"), PythonBlock().Match(readme).Groups[1].Value);
        return Probabilities(RunPython(copy, "predict.py", images), images);
    }

    /// <summary>
    /// The README's ONNX Runtime script, with onnxruntime stood in by Reference/onnxruntime: a first run records each
    /// input the script builds, the real ONNX Runtime runs the published graph on exactly those, and a second run
    /// prints the probabilities from those logits.
    /// </summary>
    public static OnnxScriptRun RunOnnx(string published, string copy, IReadOnlyList<string> images)
    {
        string readme = Copy(published, copy, "onnxruntime");
        var block = OnnxPythonBlock().Match(readme);
        if (!block.Success) throw new InvalidOperationException("README: no ONNX Runtime script");
        File.WriteAllText(Path.Combine(copy, "predict_onnx.py"), block.Groups[1].Value);
        RunPython(copy, "predict_onnx.py", images);

        string calls = Path.Combine(copy, "onnxruntime-calls");
        var recorded = Enumerable.Range(0, images.Count)
            .Select(i => JsonDocument.Parse(File.ReadAllText(Path.Combine(calls, $"{i}.json"))).RootElement.Clone()).ToList();
        using var session = new InferenceSession(Path.Combine(copy, "model.onnx"));
        for (int i = 0; i < images.Count; i++)
        {
            var input = recorded[i].GetProperty("inputs").EnumerateObject().Single();
            if (input.Value.GetProperty("dtype").GetString() != "float32") throw new InvalidOperationException($"README ONNX script fed {input.Value}");
            int[] shape = [.. input.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32())];
            var pixels = new float[shape.Aggregate(1, (a, b) => a * b)];
            Buffer.BlockCopy(File.ReadAllBytes(Path.Combine(calls, $"{i}.0.bin")), 0, pixels, 0, pixels.Length * sizeof(float));
            using var results = session.Run([NamedOnnxValue.CreateFromTensor(input.Name, new DenseTensor<float>(pixels, shape))]);
            var logits = results.Single().AsTensor<float>().ToArray();
            File.WriteAllBytes(Path.Combine(calls, $"{i}.logits"), [.. logits.SelectMany(BitConverter.GetBytes)]);
        }
        return new OnnxScriptRun(Probabilities(RunPython(copy, "predict_onnx.py", images), images), recorded);
    }

    /// <summary>The published folder copied as a user has it, with the stand-in for a pip package Debian 12 lacks beside the script, where Python looks first.</summary>
    private static string Copy(string published, string copy, string shimPackage)
    {
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(published)) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)), overwrite: true);
        string shim = Directory.CreateDirectory(Path.Combine(copy, shimPackage)).FullName;
        foreach (var file in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "Reference", shimPackage), "*.py"))
            File.Copy(file, Path.Combine(shim, Path.GetFileName(file)), overwrite: true);
        return File.ReadAllText(Path.Combine(published, "README.md"));
    }

    private static string RunPython(string folder, string script, IReadOnlyList<string> images)
    {
        var python = ProcessRunner.Run("/usr/bin/python3", [script, .. images], folder, TimeSpan.FromMinutes(5));
        if (python.ExitCode != 0) throw new InvalidOperationException($"README {script}: exit {python.ExitCode}: {python.Error}");
        return python.Output;
    }

    private static List<Dictionary<string, double>> Probabilities(string output, IReadOnlyList<string> images)
    {
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonDocument.Parse(line).RootElement).ToList();
        if (!lines.Select(l => l.GetProperty("image").GetString()).SequenceEqual(images))
            throw new InvalidOperationException($"README script answered for other images: {output}");
        return lines.Select(l => l.GetProperty("probabilities").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble())).ToList();
    }

    [GeneratedRegex("```python\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex PythonBlock();

    [GeneratedRegex("## Use it with ONNX Runtime\n.*?```python\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex OnnxPythonBlock();
}

/// <param name="Calls">per image, what the script asked of onnxruntime: the model file, the outputs, each input's name, dtype and shape</param>
internal sealed record OnnxScriptRun(List<Dictionary<string, double>> Probabilities, List<JsonElement> Calls);
