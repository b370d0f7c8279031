using System.Text.Json;
using nietras.SeparatedValues;

namespace FineTune.Core.Data;

/// <summary>
/// A manifest: a dataset's images and their labels, paths relative to the manifest's folder, each row optionally naming its
/// split (<see cref="DatasetSplits"/>; a row without one is a training image). Either a .csv (RFC 4180 quoting) whose header
/// names its columns (<c>path</c>, <c>file_name</c> as Hugging Face's metadata.csv, or <c>image</c>; <c>label</c>; <c>split</c>)
/// or bare <c>path,label[,split]</c> lines; or a .jsonl, one object a line (Azure ML / Vertex style:
/// <c>{"image_url": …, "label": …, "split": …}</c>).
/// </summary>
public static class ManifestSource
{
    /// <summary>Every row is held in memory, so a larger manifest is refused before it is read.</summary>
    public const long MaxBytes = 256L << 20;

    private const string Label = "label", Split = "split";

    /// <summary>The names of the image's column: <c>path</c> first, as error messages list them.</summary>
    private static readonly string[] PathNames = ["path", "file_name", "image", "image_url"];

    /// <summary>predictions.csv's other columns: read back as a manifest, its rows are its images with their true labels.</summary>
    private static readonly string[] PredictionColumns = ["predicted", "confidence", "top", "error"];

    private static readonly string KnownColumns =
        $"{string.Join(", ", PathNames)} (the image), {Label}, {Split}; ignored: {string.Join(", ", PredictionColumns)} (predictions.csv)";

    /// <summary>A manifest row: the file it names (under the manifest's folder) and as written, its label and split.</summary>
    private sealed record ManifestRow(string Path, string Written, string Label, string Split);

    /// <summary>Whether <paramref name="location"/> is read as a manifest (by its extension).</summary>
    public static bool IsManifest(string location) => Path.GetExtension(location).ToLowerInvariant() is ".csv" or ".jsonl";

    /// <summary>
    /// The files a manifest names, as written (relative to its folder), each checked to stay under that
    /// folder: what to fetch when the manifest is a blob.
    /// </summary>
    /// <param name="name">what the user calls the manifest, for errors</param>
    public static IReadOnlyList<string> Files(string manifest, string name)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(manifest))!;
        return ReadRows(manifest, name).Select(r => Path.GetRelativePath(folder, r.Path)).ToList();
    }

    /// <summary>
    /// The images of a manifest to classify, in its order: its label column is optional (a row's label is then empty), its
    /// split column ignored; the rows are checked as a dataset's are.
    /// </summary>
    /// <param name="name">what the user calls the manifest, for errors</param>
    public static IReadOnlyList<ManifestImage> Images(string manifest, string name) =>
        ReadRows(manifest, name, labelsRequired: false).Select(r => new ManifestImage(r.Path, r.Written, r.Label)).ToList();

    /// <param name="name">what the user calls the manifest: its files are named from its folder</param>
    internal static DatasetParts Read(string manifest, string name)
    {
        var rows = ReadRows(manifest, name);
        var classes = rows.Where(r => r.Split == DatasetSplits.Train).Select(r => r.Label).Distinct().Order(StringComparer.Ordinal).ToList();
        var labelOf = classes.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => p.i, StringComparer.Ordinal);
        // One pass over the rows per split: a manifest may list millions of images.
        List<List<string>> ByClass(string split)
        {
            var byClass = classes.Select(_ => new List<string>()).ToList();
            foreach (var row in rows)
            {
                if (row.Split == split && labelOf.TryGetValue(row.Label, out int label)) byClass[label].Add(row.Path);
            }
            return byClass;
        }
        List<List<string>>? Given(string split)
        {
            var labels = rows.Where(r => r.Split == split).Select(r => r.Label).ToList();
            if (labels.Count == 0) return null;
            DatasetParts.RequireKnown($"{split} rows", labels, classes, "train rows");
            return ByClass(split);
        }
        string folder = Path.GetDirectoryName(Path.GetFullPath(manifest))!;
        return new DatasetParts(folder, classes, ByClass(DatasetSplits.Train), Given(DatasetSplits.Validation), Given(DatasetSplits.Test),
            new DatasetNames(folder, name[..(name.LastIndexOf('/') + 1)]));
    }

    /// <summary>Every row, its path resolved under the manifest's folder: an absolute path or one leaving the folder is refused.</summary>
    private static List<ManifestRow> ReadRows(string manifest, string name, bool labelsRequired = true)
    {
        long length = new FileInfo(manifest).Length;
        if (length > MaxBytes)
            throw new InvalidDatasetException($"{name}: {length} bytes is over the {MaxBytes}-byte limit of a manifest");
        var rows = new Rows(Path.GetDirectoryName(Path.GetFullPath(manifest))!, name, labelsRequired);
        if (Path.GetExtension(manifest).Equals(".jsonl", StringComparison.OrdinalIgnoreCase)) ReadJsonLines(manifest, rows);
        else ReadCsv(manifest, rows);
        return rows.All;
    }

    private static void ReadCsv(string csv, Rows rows)
    {
        // The header is recognised here, not by the reader: a manifest of bare path,label lines has none.
        using var reader = Sep.New(',').Reader(o => o with { HasHeader = false, Unescape = true, Trim = SepTrim.Outer, DisableColCountCheck = true })
            .FromFile(csv);
        Columns? columns = null;
        foreach (var row in reader)
        {
            int line = row.LineNumberFrom;
            var cells = new string[row.ColCount];
            for (int i = 0; i < cells.Length; i++) cells[i] = row[i].ToString();
            if (cells.All(string.IsNullOrWhiteSpace)) continue;
            if (columns is null)
            {
                columns = Header(cells, rows.Name, line, rows.LabelsRequired);
                if (columns is not null) continue;
                columns = Columns.Bare;
            }
            if (columns.Count is int count && cells.Length != count)
                throw rows.Error(line, $"{cells.Length} fields where the header has {count}");
            if (columns.Count is null && (cells.Length > 3 || cells.Length < (rows.LabelsRequired ? 2 : 1)))
                throw rows.Error(line, $"expected {(rows.LabelsRequired ? "" : "'path', ")}'path,label' or 'path,label,split', found {cells.Length} fields");
            rows.Add(line, cells[columns.Path], columns.Label is int l && l < cells.Length ? cells[l] : "", columns.Split is int s && s < cells.Length ? cells[s] : "");
        }
    }

    /// <summary>The columns a manifest's header names; null when the first row is an image's row.</summary>
    /// <param name="Count">the header's width; null for bare path,label[,split] rows</param>
    private sealed record Columns(int Path, int? Label, int? Split, int? Count)
    {
        public static readonly Columns Bare = new(0, 1, 2, null);
    }

    private static Columns? Header(string[] cells, string name, int line, bool labelsRequired)
    {
        // An image's path has an extension; a column name has none. So a first row that names a known column, or whose first
        // cell has no extension, is a header, and a header with a column this reader does not know is refused, not read as data.
        bool header = cells.Any(c => IsKnownColumn(c.Trim())) || Path.GetExtension(cells[0].Trim()).Length == 0;
        if (!header) return null;
        int? path = null, label = null, split = null;
        for (int i = 0; i < cells.Length; i++)
        {
            string column = cells[i].Trim();
            if (PathNames.Contains(column, StringComparer.OrdinalIgnoreCase)) Assign(ref path, i, column);
            else if (column.Equals(Label, StringComparison.OrdinalIgnoreCase)) Assign(ref label, i, column);
            else if (column.Equals(Split, StringComparison.OrdinalIgnoreCase)) Assign(ref split, i, column);
            else if (!PredictionColumns.Contains(column, StringComparer.OrdinalIgnoreCase))
                throw new InvalidDatasetException(
                    $"{name}:{line}: unknown column '{column}'; a manifest's header names {KnownColumns} " +
                    "(a manifest without a header starts with an image's path, which has an extension)");
        }
        if (path is null || (label is null && labelsRequired))
            throw new InvalidDatasetException($"{name}:{line}: the header names no {(path is null ? "image column (path, file_name or image)" : "label column")}");
        return new Columns(path.Value, label, split, cells.Length);

        void Assign(ref int? slot, int index, string column)
        {
            if (slot is not null)
                throw new InvalidDatasetException($"{name}:{line}: '{cells[slot.Value].Trim()}' and '{column}' name the same column");
            slot = index;
        }
    }

    private static bool IsKnownColumn(string column) =>
        PathNames.Concat(PredictionColumns).Append(Label).Append(Split).Contains(column, StringComparer.OrdinalIgnoreCase);

    private static void ReadJsonLines(string jsonl, Rows rows)
    {
        int line = 0;
        foreach (var text in File.ReadLines(jsonl))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            string? path = null, label = null, split = null;
            try
            {
                using var document = JsonDocument.Parse(text);
                if (document.RootElement.ValueKind != JsonValueKind.Object)
                    throw rows.Error(line, $"expected a JSON object, found {document.RootElement.ValueKind.ToString().ToLowerInvariant()}");
                foreach (var field in document.RootElement.EnumerateObject())
                {
                    if (PathNames.Contains(field.Name, StringComparer.OrdinalIgnoreCase)) Take(ref path, field);
                    else if (field.Name.Equals(Label, StringComparison.OrdinalIgnoreCase)) Take(ref label, field);
                    else if (field.Name.Equals(Split, StringComparison.OrdinalIgnoreCase)) Take(ref split, field);
                    else throw rows.Error(line, $"unknown field '{field.Name}'; a manifest's rows have {PathNames[^1]} (or {string.Join(", ", PathNames[..^1])}), {Label} and {Split}");
                }
            }
            catch (JsonException e)
            {
                throw rows.Error(line, $"not JSON: {e.Message}");
            }
            rows.Add(line, path ?? "", label ?? "", split ?? "");
        }

        void Take(ref string? slot, JsonProperty field)
        {
            if (slot is not null) throw rows.Error(line, $"'{field.Name}' repeats the image, label or split the row already gives");
            if (field.Value.ValueKind != JsonValueKind.String) throw rows.Error(line, $"'{field.Name}' must be a string");
            slot = field.Value.GetString()!;
        }
    }

    /// <summary>The rows read so far, each checked as it is added: both formats keep the same rules.</summary>
    private sealed class Rows(string folder, string name, bool labelsRequired)
    {
        private readonly Dictionary<string, int> _firstLine = new(StringComparer.Ordinal);

        public string Name => name;
        public bool LabelsRequired => labelsRequired;
        public List<ManifestRow> All { get; } = [];

        public InvalidDatasetException Error(int line, string reason) => new($"{name}:{line}: {reason}");

        public void Add(int line, string path, string label, string split)
        {
            (path, label, split) = (path.Trim(), label.Trim(), split.Trim());
            if (path.Length == 0 || (label.Length == 0 && labelsRequired))
                throw Error(line, labelsRequired ? "empty path or label" : "empty path");
            // A label becomes a class name in the model card, the metrics and the terminal.
            if (label.Any(char.IsControl))
                throw Error(line, "the label holds a control character");
            // No split named: the row is a training image, as in a two-column manifest.
            string part = split.Length == 0 ? DatasetSplits.Train : DatasetSplits.Of(split)
                ?? throw Error(line, $"'{split}' is not a split; use one of {DatasetSplits.AllAliases}");
            // Azure ML and Vertex manifests name cloud URLs: only files beside the manifest are read.
            if (path.Contains("://", StringComparison.Ordinal))
                throw Error(line, $"'{path}' is a URL; a manifest names files relative to its folder");
            var (full, problem) = DatasetPaths.UnderFolder(folder, path);
            if (full is null)
                throw Error(line, problem!);
            // One file in two rows would be counted twice, or under two labels, or in two splits.
            if (!_firstLine.TryAdd(full, line))
                throw Error(line, $"'{path}' is already listed on line {_firstLine[full]}");
            All.Add(new ManifestRow(full, path, label, part));
        }
    }
}

/// <summary>An image a manifest names: its file, its path as the manifest writes it, its label (empty when it has none).</summary>
public sealed record ManifestImage(string Path, string Written, string Label);
