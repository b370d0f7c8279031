using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;
using FineTune.Core;

namespace FineTune.Cli;

/// <summary>
/// Options that show their default in --help and whose bad values fail naming the option and what it takes
/// (System.CommandLine's own message names the CLR type, e.g. <c>System.Nullable`1[System.Int32]</c>).
/// </summary>
internal static class CliOptions
{
    public static Option<T> Integer<T>(string name, string description, T defaultValue) where T : struct, IBinaryInteger<T> =>
        Parsed(name, description, defaultValue, "a whole number");

    public static Option<double> Number(string name, string description, double defaultValue) =>
        Parsed(name, description, defaultValue, "a number");

    /// <summary>A choice from its table: the help lists every name with what it does; another name fails listing them.</summary>
    public static Option<string> Choice<T, TChoice>(string name, string what, ChoiceTable<T, TChoice> table, T defaultValue)
        where T : struct, Enum where TChoice : Choice<T>
    {
        var option = new Option<string>(name) { Description = $"{what}: {table.Described}.", DefaultValueFactory = _ => table[defaultValue].Name };
        option.CompletionSources.Add(table.All.Select(c => c.Name).ToArray());
        option.Validators.Add(result =>
        {
            if (result.Tokens is [var token] && !table.TryParse(token.Value, out _))
                result.AddError($"{name}: '{token.Value}' is not {table.Allowed}");
        });
        return option;
    }

    /// <summary>Whether the user typed the option, rather than it taking its default.</summary>
    public static bool Given(this ParseResult result, Option option) => result.GetResult(option) is { Implicit: false };

    private static Option<T> Parsed<T>(string name, string description, T defaultValue, string kind) where T : struct, IParsable<T> => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            if (result.Tokens is not [var token]) return defaultValue;
            if (T.TryParse(token.Value, CultureInfo.InvariantCulture, out var value)) return value;
            result.AddError($"{name}: '{token.Value}' is not {kind}");
            return defaultValue;
        },
    };
}
