using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace FineTune.Core;

/// <summary>One value of a user-facing choice: its name in job specs, on the command line and in model cards, and what it does.</summary>
public record Choice<T>(T Value, string Name, string Description) where T : struct, Enum;

/// <summary>
/// Every value of one choice in one place: the names that are read and written, the list that help texts and
/// error messages show, and the value each name stands for. The table must have exactly one entry per member of
/// <typeparamref name="T"/>, so a new member cannot be left without a name.
/// </summary>
public sealed class ChoiceTable<T, TChoice> where T : struct, Enum where TChoice : Choice<T>
{
    private readonly TChoice[] _choices;

    public ChoiceTable(params TChoice[] choices)
    {
        var values = Enum.GetValues<T>();
        if (choices.Length != values.Length || values.Any(v => choices.Count(c => c.Value.Equals(v)) != 1)
            || choices.DistinctBy(c => c.Name).Count() != choices.Length)
            throw new ArgumentException($"a {typeof(T).Name} table needs one entry, with its own name, for each of {string.Join(", ", values)}", nameof(choices));
        _choices = choices;
        Allowed = choices.Length == 1 ? choices[0].Name
            : string.Join(", ", choices[..^1].Select(c => c.Name)) + " or " + choices[^1].Name;
    }

    public IReadOnlyList<TChoice> All => _choices;

    /// <summary>"sgd, adam or adamw": what an error message says a value must be.</summary>
    public string Allowed { get; }

    /// <summary>"crop (…), pad (…)": every name with what it does, for help texts.</summary>
    public string Described => string.Join(", ", _choices.Select(c => $"{c.Name} ({c.Description})"));

    public TChoice this[T value] => Array.Find(_choices, c => c.Value.Equals(value))
        ?? throw new ArgumentOutOfRangeException(nameof(value), value, $"not a {typeof(T).Name}");

    public bool TryParse(string? name, [MaybeNullWhen(false)] out TChoice choice)
    {
        choice = Array.Find(_choices, c => c.Name == name);
        return choice is not null;
    }

    /// <summary>The value named <paramref name="name"/>; a <see cref="FormatException"/> listing the names otherwise.</summary>
    public T Parse(string? name) => TryParse(name, out var choice) ? choice.Value : throw new FormatException($"'{name}' is not {Allowed}");
}

/// <summary>The names a choice is written as in JSON, for the job schema's enumerations.</summary>
public interface IChoiceNames
{
    IReadOnlyList<string> Names { get; }

    /// <summary><see cref="ChoiceTable{T, TChoice}.Described"/></summary>
    string Described { get; }
}

/// <summary>
/// A choice in JSON as its table's name. An unknown name fails as "must be a, b or c"; the serializer adds the
/// field's path, so job specs report it as a field error.
/// </summary>
public abstract class ChoiceJsonConverter<T, TChoice>(ChoiceTable<T, TChoice> table) : JsonConverter<T>, IChoiceNames
    where T : struct, Enum where TChoice : Choice<T>
{
    public IReadOnlyList<string> Names { get; } = [.. table.All.Select(c => c.Name)];

    public string Described => table.Described;

    public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.String && table.TryParse(reader.GetString(), out var choice)
            ? choice.Value
            : throw new JsonException($"must be {table.Allowed}");

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => writer.WriteStringValue(table[value].Name);
}
