using System.Text.Json;
using System.Text.Json.Serialization;

namespace FineTune.Core.Models;

/// <summary>
/// What stays trainable: <c>head</c> (the seed recipe: only the new classifier), <c>last:N</c> (the last N
/// stages and the head), or <c>full</c>.
/// </summary>
[JsonConverter(typeof(FreezeModeJson))]
public readonly record struct FreezeMode(int TrainableStages)
{
    /// <summary>The forms a freeze mode is written in, for help texts and error messages.</summary>
    public const string Forms = "head, last:N (N >= 1) or full";
    public const string Described = "head (the new classifier only), last:N (the last N stages too) or full (everything)";
    /// <summary>The forms as a regular expression, for the job schema.</summary>
    public const string Pattern = "^(head|full|last:[1-9][0-9]*)$";

    public static FreezeMode Head => new(0);
    public static FreezeMode Full => new(int.MaxValue);
    public static FreezeMode Last(int stages) => stages >= 1
        ? new(stages)
        : throw new ArgumentOutOfRangeException(nameof(stages), stages, "last:N needs N >= 1");

    public static FreezeMode Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text == "head") return Head;
        if (text == "full") return Full;
        if (text.StartsWith("last:", StringComparison.Ordinal) && int.TryParse(text.AsSpan(5), out int n) && n >= 1)
            return Last(n);
        throw new FormatException($"freeze mode '{text}' is not {Forms}");
    }

    public override string ToString() => TrainableStages switch
    {
        0 => "head",
        int.MaxValue => "full",
        var n => $"last:{n}",
    };
}

/// <summary>A freeze mode in JSON as its text (<c>head</c>, <c>last:2</c>, <c>full</c>); a bad one fails as a field error.</summary>
public sealed class FreezeModeJson : JsonConverter<FreezeMode>
{
    public override FreezeMode Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        try
        {
            return FreezeMode.Parse(reader.TokenType == JsonTokenType.String ? reader.GetString()! : throw new FormatException($"must be {FreezeMode.Forms}"));
        }
        catch (FormatException e)
        {
            throw new JsonException(e.Message, e);
        }
    }

    public override void Write(Utf8JsonWriter writer, FreezeMode value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}
