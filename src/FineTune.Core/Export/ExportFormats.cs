namespace FineTune.Core.Export;

public enum ExportFormat { Onnx }

/// <summary>The formats a published model exports to, by their names on the command line.</summary>
public static class ExportFormats
{
    public static readonly ChoiceTable<ExportFormat, Choice<ExportFormat>> Choices = new(
        new Choice<ExportFormat>(ExportFormat.Onnx, "onnx", $"an ONNX graph, opset {OnnxExporter.Opset}, for ONNX Runtime, ML.NET and the rest"));
}
