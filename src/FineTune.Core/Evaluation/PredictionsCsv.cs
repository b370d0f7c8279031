using System.Globalization;

namespace FineTune.Core.Evaluation;

/// <summary>
/// predictions.csv, one line per image (RFC 4180 quoting): <c>path,label,predicted,confidence,top</c>, as a run's report
/// writes it, and with <c>error</c> after them for <c>finetune predict</c>, where an image may be unreadable and a label unknown.
/// Read back, it is a manifest (<see cref="Data.ManifestSource"/>).
/// </summary>
public sealed class PredictionsCsv
{
    public const string ErrorColumn = "error";

    private readonly TextWriter _writer;
    private readonly bool _errors;

    /// <param name="errors">whether the file has the <see cref="ErrorColumn"/></param>
    public PredictionsCsv(TextWriter writer, bool errors)
    {
        _writer = writer;
        _errors = errors;
        writer.WriteLine(errors ? $"path,label,predicted,confidence,top,{ErrorColumn}" : "path,label,predicted,confidence,top");
    }

    public void Write(Prediction prediction) =>
        Line(prediction.Path, prediction.Label, prediction.Predicted, prediction.Confidence.ToString("0.######", CultureInfo.InvariantCulture),
            string.Join(' ', prediction.Top), "");

    /// <summary>An image that could not be classified: its path, label (or empty) and why.</summary>
    public void WriteError(string path, string label, string error)
    {
        if (!_errors) throw new InvalidOperationException("this predictions.csv has no error column");
        Line(path, label, "", "", "", error);
    }

    private void Line(string path, string label, string predicted, string confidence, string top, string error)
    {
        string line = string.Join(',', Quoted(path), Quoted(label), Quoted(predicted), confidence, Quoted(top));
        _writer.WriteLine(_errors ? line + ',' + Quoted(error) : line);
    }

    private static string Quoted(string value) =>
        value.IndexOfAny([',', '"', '\n', '\r']) < 0 ? value : '"' + value.Replace("\"", "\"\"") + '"';
}
