using Microsoft.AspNetCore.Http;

namespace FineTune.Api;

/// <summary>The dashboard: plain HTML, JavaScript and CSS files embedded in this assembly, served at the root by both hosts.</summary>
public static class Dashboard
{
    public const string Page = "index.html";

    private static readonly Dictionary<string, string> ContentTypes = new(StringComparer.Ordinal)
    {
        [".html"] = "text/html; charset=utf-8",
        [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8",
    };

    /// <summary>Whether <paramref name="asset"/> ("": the page) is one of the dashboard's files.</summary>
    public static bool Has(string asset)
    {
        string name = asset.Length == 0 ? Page : asset;
        return ContentTypes.ContainsKey(Path.GetExtension(name)) && typeof(Dashboard).Assembly.GetManifestResourceInfo("dashboard/" + name) is not null;
    }

    /// <summary>The file <paramref name="asset"/> ("" or null: the page); 404 for anything else.</summary>
    public static IResult Serve(string? asset)
    {
        string name = string.IsNullOrEmpty(asset) ? Page : asset;
        var stream = typeof(Dashboard).Assembly.GetManifestResourceStream("dashboard/" + name);
        if (stream is null || !ContentTypes.TryGetValue(Path.GetExtension(name), out var type))
        {
            stream?.Dispose();
            return Results.NotFound();
        }
        return Results.Stream(stream, type);
    }
}
