using System.Text.Json;
using System.Text.Json.Serialization;

namespace FineTune.Core.Evaluation;

public sealed record ClassMetrics(string Class, double Precision, double Recall, double F1, int Support);

/// <summary>One image's outcome: its true class, the top predictions and their probabilities.</summary>
public sealed record Prediction(string Path, string Label, string Predicted, double Confidence, IReadOnlyList<string> Top);

/// <summary>An image the model got wrong: its path, its true class and the model's most probable classes (at most <see cref="EvaluationReport.MisclassifiedTop"/>).</summary>
public sealed record MisclassifiedImage(string Path, string Label, IReadOnlyList<ClassProbability> Top);

/// <summary>How a model did on a labelled set; <see cref="Split"/> names the set (<see cref="Data.DatasetSplits"/>).</summary>
public sealed record EvaluationReport(
    string Split,
    int Count,
    double Loss,
    double Top1Accuracy,
    double? Top5Accuracy,
    IReadOnlyList<string> Classes,
    IReadOnlyList<ClassMetrics> PerClass,
    /// <summary>[true class][predicted class] counts.</summary>
    IReadOnlyList<IReadOnlyList<int>> ConfusionMatrix,
    [property: JsonIgnore] IReadOnlyList<Prediction> Predictions)
{
    /// <summary>How many classes each misclassified image lists, and how many such images the report keeps.</summary>
    public const int MisclassifiedTop = 3;
    public const int MaxMisclassified = 48;

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>The images predicted wrong, the most confident mistakes first (at most <see cref="MaxMisclassified"/>): what to look at first.</summary>
    public IReadOnlyList<MisclassifiedImage> Misclassified { get; init; } = [];

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>path,label,predicted,confidence,top: one line per image (<see cref="PredictionsCsv"/>).</summary>
    public void WritePredictionsCsv(TextWriter writer)
    {
        var csv = new PredictionsCsv(writer, errors: false);
        foreach (var p in Predictions) csv.Write(p);
    }
}
