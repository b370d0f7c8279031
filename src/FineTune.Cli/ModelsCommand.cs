using System.CommandLine;
using System.Globalization;
using FineTune.Core.Models;
using FineTune.Core.Weights;

namespace FineTune.Cli;

/// <summary><c>finetune models</c>: the model families, their heads, inputs and where their weights come from.</summary>
internal static class ModelsCommand
{
    public static Command Create(TextWriter output)
    {
        var command = new Command("models", "List the model families that can be fine-tuned.");
        command.SetAction(_ =>
        {
            Write(output);
            return ExitCodes.Succeeded;
        });
        return command;
    }

    public static void Write(TextWriter output)
    {
        string[] header = ["family", "head", "input", "preprocessing", "pretrained"];
        var rows = ModelRegistry.Families.Select(Describe).Prepend(header).ToList();
        var widths = Enumerable.Range(0, header.Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        foreach (var row in rows)
            output.WriteLine(string.Join("  ", row.Select((cell, i) => cell.PadRight(widths[i]))).TrimEnd());
    }

    private static string[] Describe(ModelFamily family)
    {
        var p = family.Preprocessing;
        string preprocessing = p.MeanImage is not null
            ? $"{p.ChannelOrder.ToString().ToUpperInvariant()} 0-255 minus mean image"
            : $"{p.ChannelOrder.ToString().ToUpperInvariant()} mean [{Join(p.Mean)}] std [{Join(p.Std)}]";
        return
        [
            family.Name,
            family.HeadPath,
            $"{p.CropSize}x{p.CropSize} (resize {p.ResizeSize})",
            preprocessing,
            family.HasBundledWeights ? "bundled" : "torchvision: " + string.Join(", ", family.Weights.Select(w => w.Tag)),
        ];
    }

    private static string Join(IEnumerable<float> values) =>
        string.Join(", ", values.Select(v => v.ToString("0.###", CultureInfo.InvariantCulture)));
}
