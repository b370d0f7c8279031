using System.IO.Compression;

namespace FineTune.Testing;

/// <summary>
/// Real labelled photos: Debian's tuxpaint-stamps-default (GPL-2, so installed at test time by .ci/run and
/// never committed): PNG cut-outs in category folders.
/// </summary>
public static class TuxPaintStamps
{
    public const string Root = "/usr/share/tuxpaint/stamps";

    /// <summary>Five categories with at least 30 photos each, the set the accuracy tests fine-tune on.</summary>
    public static readonly string[] Categories = ["animals", "food", "household", "plants", "town"];

    public static IReadOnlyList<string> Images(string category, int count)
    {
        var folder = Path.Combine(Root, category);
        if (!Directory.Exists(folder))
            throw new InvalidOperationException($"{folder} is missing: apt-get install tuxpaint-stamps-default");
        // The cartoon/ sub-folders hold drawings, not photos.
        return Directory.EnumerateFiles(folder, "*.png", SearchOption.AllDirectories)
            .Where(path => !path.Contains("/cartoon/", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).Take(count).ToList();
    }

    /// <summary>
    /// An ImageFolder tree of copies of the first <paramref name="perClass"/> images of each category (copies, not
    /// links: a dataset the library scans by default never follows a link out of its folder); copies already there are kept.
    /// </summary>
    public static string CreateImageFolder(string destination, int perClass, IEnumerable<string>? categories = null)
    {
        foreach (var category in categories ?? Categories)
        {
            var folder = Directory.CreateDirectory(Path.Combine(destination, category)).FullName;
            foreach (var image in Images(category, perClass))
            {
                // Sub-folders reuse file names (food/fruit/banana.png, food/banana.png): keep the sub-path in the name.
                string name = Path.GetRelativePath(Path.Combine(Root, category), image).Replace('/', '_');
                string copy = Path.Combine(folder, name);
                if (!File.Exists(copy)) File.Copy(image, copy);
            }
        }
        return destination;
    }

    /// <summary>A .zip of class folders holding the first <paramref name="perClass"/> images of each category, as a user would upload it.</summary>
    public static byte[] CreateZip(int perClass, IEnumerable<string> categories)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var category in categories)
                foreach (var image in Images(category, perClass))
                    zip.CreateEntryFromFile(image, $"{category}/{Path.GetRelativePath(Path.Combine(Root, category), image).Replace('/', '_')}");
        }
        return buffer.ToArray();
    }
}
