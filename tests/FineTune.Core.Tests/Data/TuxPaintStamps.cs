namespace FineTune.Core.Tests.Data;

/// <summary>
/// Real labelled photos: Debian's tuxpaint-stamps-default (GPL-2, so installed at test time by .ci/run and
/// never committed): PNG cut-outs in category folders.
/// </summary>
internal static class TuxPaintStamps
{
    public const string Root = "/usr/share/tuxpaint/stamps";

    public static IReadOnlyList<string> Images(string category, int count)
    {
        var folder = Path.Combine(Root, category);
        if (!Directory.Exists(folder))
            throw new InvalidOperationException($"{folder} is missing: apt-get install tuxpaint-stamps-default");
        return Directory.EnumerateFiles(folder, "*.png", SearchOption.AllDirectories)
            .Order(StringComparer.Ordinal).Take(count).ToList();
    }
}
