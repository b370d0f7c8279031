using System.IO.Compression;
using FineTune.Core.Data;
using SkiaSharp;

namespace FineTune.Core.Tests.Data;

/// <summary>Real images with every kind of bad file a user's folder can hold, and the documented outcome of each.</summary>
public sealed class DatasetLoaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("datasets-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ClassesAreSortedFolderNamesAndTheSplitIsStratifiedAndSeeded()
    {
        var root = Folder("plain", ("zebra", 10), ("apple", 5), ("Mango", 4));

        var first = DatasetLoader.Load(root, new DatasetOptions { SplitSeed = 3 });
        var again = DatasetLoader.Load(root, new DatasetOptions { SplitSeed = 3 });
        var other = DatasetLoader.Load(root, new DatasetOptions { SplitSeed = 4 });

        Assert.Equal(["Mango", "apple", "zebra"], first.Classes);
        Assert.Equal([1, 1, 2], Enumerable.Range(0, 3).Select(c => first.Validation.Count(s => s.Label == c)));
        Assert.Equal(19, first.Train.Count + first.Validation.Count);
        Assert.Equal(first.Validation, again.Validation);
        Assert.NotEqual(first.Validation, other.Validation);
        Assert.Empty(first.Train.Intersect(first.Validation));
    }

    [Fact]
    public void ExplicitTrainAndValFoldersAreUsedAsGiven()
    {
        var root = Path.Combine(_dir, "split");
        Folder("split/train", ("cat", 3), ("dog", 3));
        Folder("split/val", ("cat", 1), ("dog", 2));

        var dataset = DatasetLoader.Load(root, new DatasetOptions());

        Assert.Equal(["cat", "dog"], dataset.Classes);
        Assert.Equal(6, dataset.Train.Count);
        Assert.Equal(3, dataset.Validation.Count);
        Assert.All(dataset.Validation, s => Assert.Contains("/val/", s.Path));
    }

    [Fact]
    public void ValFolderWithAnUnknownClassIsAnError()
    {
        Folder("badsplit/train", ("cat", 2), ("dog", 2));
        Folder("badsplit/val", ("cow", 1));
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(Path.Combine(_dir, "badsplit"), new DatasetOptions()));
        Assert.Contains("val/ has classes that train/ lacks: cow", error.Message);
    }

    [Fact]
    public void SplitFolderAliasesAreMatchedWhateverTheirCase()
    {
        var root = Path.Combine(_dir, "aliases");
        Folder("aliases/Training", ("cat", 3), ("dog", 3));
        Folder("aliases/VALID", ("cat", 1), ("dog", 1));
        Folder("aliases/eval", ("cat", 2), ("dog", 1));

        var dataset = DatasetLoader.Load(root, new DatasetOptions());

        Assert.Equal(["cat", "dog"], dataset.Classes);
        Assert.Equal(6, dataset.Train.Count);
        Assert.All(dataset.Validation, s => Assert.Contains("/VALID/", s.Path));
        Assert.Equal(2, dataset.Validation.Count);
        Assert.All(dataset.Test, s => Assert.Contains("/eval/", s.Path));
        Assert.Equal(3, dataset.Test.Count);
        Assert.Equal(DatasetSplits.Test, dataset.EvaluationSplit);
    }

    [Fact]
    public void TrainAndTestFoldersHoldOutTheTestSetAndValidationIsCarvedFromTraining()
    {
        var root = Path.Combine(_dir, "traintest");
        Folder("traintest/train", ("cat", 5), ("dog", 5));
        Folder("traintest/testing", ("cat", 2), ("dog", 2));

        var dataset = DatasetLoader.Load(root, new DatasetOptions { TestFraction = 0.5 });

        Assert.Equal(4, dataset.Test.Count);
        Assert.All(dataset.Test, s => Assert.Contains("/testing/", s.Path));
        Assert.Equal(2, dataset.Validation.Count);
        Assert.Equal(8, dataset.Train.Count);
        Assert.All(dataset.Train.Concat(dataset.Validation), s => Assert.Contains("/train/", s.Path));
        Assert.Empty(dataset.Train.Intersect(dataset.Validation));
    }

    [Fact]
    public void SplitFoldersAreNeverTakenAsClasses()
    {
        // The images sit directly in the split folders: an error rather than a three-class model of "test", "train" and "valid".
        var root = Path.Combine(_dir, "flat");
        foreach (var split in new[] { "train", "valid", "test" })
        {
            using var bitmap = ImageLoaderTests.TwoColour(20, 16);
            File.WriteAllBytes(Path.Combine(Directory.CreateDirectory(Path.Combine(root, split)).FullName, "a.png"),
                ImageLoaderTests.Encode(bitmap, SKEncodedImageFormat.Png));
        }

        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(root, new DatasetOptions()));

        Assert.Equal("train/ has no class folders: each split folder holds one folder per class", error.Message);
    }

    [Theory]
    [InlineData(new[] { "val", "test" }, "the folders test/, val/ name dataset splits, but there is no training folder (train/, training/)")]
    [InlineData(new[] { "train", "val", "valid" }, "the folders val/, valid/ name the same split: keep one")]
    [InlineData(new[] { "Train", "training", "test" }, "the folders Train/, training/ name the same split: keep one")]
    [InlineData(new[] { "bus", "car", "train" }, "the folder train/ names a dataset split, but there is no validation folder (val/, valid/, validation/, dev/)")]
    public void SplitFoldersThatAreNoSplitLayoutAreAnError(string[] folders, string expected)
    {
        string name = "layout-" + string.Join('-', folders);
        foreach (var folder in folders) Folder($"{name}/{folder}", ("cat", 2), ("dog", 2));

        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(Path.Combine(_dir, name), new DatasetOptions()));

        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void TestFolderWithAnUnknownClassIsAnError()
    {
        Folder("badtest/train", ("cat", 2), ("dog", 2));
        Folder("badtest/val", ("cat", 1), ("dog", 1));
        Folder("badtest/test", ("cow", 1), ("cat", 1));
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(Path.Combine(_dir, "badtest"), new DatasetOptions()));
        Assert.Equal("test/ has classes that train/ lacks: cow", error.Message);
    }

    [Fact]
    public void TestFractionCarvesASeededStratifiedTestSetDisjointFromValidation()
    {
        var root = Folder("pool", ("a", 10), ("b", 10), ("c", 5));
        var options = new DatasetOptions { ValidationFraction = 0.2, TestFraction = 0.2, SplitSeed = 3 };

        var first = DatasetLoader.Load(root, options);
        var again = DatasetLoader.Load(root, options);
        var other = DatasetLoader.Load(root, options with { SplitSeed = 4 });
        var noTest = DatasetLoader.Load(root, options with { TestFraction = 0 });

        Assert.Equal([2, 2, 1], Enumerable.Range(0, 3).Select(c => first.Test.Count(s => s.Label == c)));
        Assert.Equal([2, 2, 1], Enumerable.Range(0, 3).Select(c => first.Validation.Count(s => s.Label == c)));
        Assert.Equal(25, first.Train.Concat(first.Validation).Concat(first.Test).Distinct().Count());
        Assert.Empty(first.Test.Intersect(first.Validation));
        Assert.Empty(first.Test.Intersect(first.Train));
        Assert.Equal(first.Train, again.Train);
        Assert.Equal(first.Validation, again.Validation);
        Assert.Equal(first.Test, again.Test);
        Assert.NotEqual(first.Test, other.Test);
        // A test share takes from training only: the validation set of a seed stays what it was.
        Assert.Equal(noTest.Validation, first.Validation);
        Assert.Empty(noTest.Test);
        Assert.Equal(DatasetSplits.Validation, noTest.EvaluationSplit);
    }

    [Fact]
    public void TestFractionKeepsATrainingImageInEveryClass()
    {
        var root = Folder("tight", ("a", 2), ("b", 10));

        var dataset = DatasetLoader.Load(root, new DatasetOptions { ValidationFraction = 0.4, TestFraction = 0.4 });

        Assert.Equal([1, 2], Enumerable.Range(0, 2).Select(c => dataset.Train.Count(s => s.Label == c)));
        Assert.Equal([0, 4], Enumerable.Range(0, 2).Select(c => dataset.Test.Count(s => s.Label == c)));
    }

    [Fact]
    public void ATestFractionThatTakesNothingOrLeavesNothingIsAnError()
    {
        var root = Folder("few", ("a", 3), ("b", 3));
        Assert.Contains("the test set is empty: a test fraction of 0.1 takes no image",
            Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(root, new DatasetOptions { TestFraction = 0.1 })).Message);
        Assert.Contains("their sum must be below 1",
            Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(root, new DatasetOptions { ValidationFraction = 0.5, TestFraction = 0.5 })).Message);
    }

    [Fact]
    public void BadFilesAreSkippedAndReportedWithTheirReasons()
    {
        var root = Folder("messy", ("cat", 20), ("dog", 20));
        var png = File.ReadAllBytes(Directory.GetFiles(Path.Combine(root, "cat"))[0]);
        File.WriteAllBytes(Path.Combine(root, "cat", "corrupt.png"), [.. "\x89PNG\r\n\x1a\n"u8.ToArray(), .. new byte[200]]);
        File.WriteAllBytes(Path.Combine(root, "cat", "empty.jpg"), []);
        File.WriteAllText(Path.Combine(root, "dog", "notes.jpg"), "not a picture");
        File.WriteAllBytes(Path.Combine(root, "dog", "truncated.png"), png[..(png.Length / 2)]);
        File.WriteAllBytes(Path.Combine(root, "dog", "really-a-png.jpg"), png);

        var dataset = DatasetLoader.Load(root, new DatasetOptions { MaxBadFraction = 0.2 });

        var reasons = dataset.Skipped.ToDictionary(s => Path.GetFileName(s.Path), s => s.Reason);
        Assert.Equal(4, reasons.Count);
        Assert.Equal("empty file", reasons["empty.jpg"]);
        Assert.Equal("not an image", reasons["notes.jpg"]);
        Assert.Contains("truncated", reasons["truncated.png"]);
        Assert.Contains("corrupt.png", reasons.Keys);
        Assert.Contains(dataset.Train.Concat(dataset.Validation), s => s.Path.EndsWith("really-a-png.jpg", StringComparison.Ordinal));
        Assert.Equal(41, dataset.Train.Count + dataset.Validation.Count);
    }

    [Fact]
    public void TooManyBadFilesFailTheDatasetNamingThem()
    {
        var root = Folder("rotten", ("cat", 3), ("dog", 3));
        File.WriteAllText(Path.Combine(root, "cat", "a.png"), "x");
        File.WriteAllText(Path.Combine(root, "dog", "b.png"), "y");
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(root, new DatasetOptions { MaxBadFraction = 0.1 }));
        Assert.Contains("2 of 8 files cannot be used, over the 10", error.Message);
        Assert.Contains("a.png: not an image", error.Message);
    }

    [Fact]
    public void HugeImagesAreRefusedBeforeDecoding()
    {
        var root = Folder("huge", ("cat", 3), ("dog", 3));
        var dataset = DatasetLoader.Load(root, new DatasetOptions { MaxPixels = 30 * 30, MaxBadFraction = 1 });
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(root, new DatasetOptions { MaxPixels = 10, MaxBadFraction = 0.5 }));
        Assert.Empty(dataset.Skipped);
        Assert.Contains("over the 10-pixel limit", error.Message);
    }

    [Fact]
    public void OversizedFilesAreSkipped()
    {
        var root = Folder("heavy", ("cat", 10), ("dog", 10));
        using (var noise = new SKBitmap(100, 100))
        {
            var random = new Random(1);
            for (int y = 0; y < 100; y++)
                for (int x = 0; x < 100; x++) noise.SetPixel(x, y, new SKColor((uint)random.Next() | 0xFF000000));
            File.WriteAllBytes(Path.Combine(root, "cat", "big.png"), ImageLoaderTests.Encode(noise, SKEncodedImageFormat.Png));
        }

        var dataset = DatasetLoader.Load(root, new DatasetOptions { MaxFileBytes = 5000, MaxBadFraction = 0.1 });

        var skipped = Assert.Single(dataset.Skipped);
        Assert.EndsWith("big.png", skipped.Path);
        Assert.Contains("over the 5000-byte limit", skipped.Reason);
    }

    [Fact]
    public void AClassWithNoUsableImagesIsAnError()
    {
        var root = Folder("hollow", ("cat", 3), ("dog", 3));
        Directory.CreateDirectory(Path.Combine(root, "emu"));
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(root, new DatasetOptions()));
        Assert.Equal("classes with no usable images: emu", error.Message);
    }

    [Fact]
    public void OneClassIsAnError()
    {
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(Folder("single", ("cat", 4)), new DatasetOptions()));
        Assert.Contains("only one class (cat)", error.Message);
    }

    [Fact]
    public void AnEmptyOrMissingDatasetIsAnError()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_dir, "nothing")).FullName;
        Assert.Contains("the dataset is empty", Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(empty, new DatasetOptions())).Message);
        Assert.Contains("does not exist", Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(Path.Combine(_dir, "nope"), new DatasetOptions())).Message);
    }

    [Fact]
    public void ZipOfAFolderLoadsLikeTheFolder()
    {
        var root = Folder("zipped/photos", ("cat", 4), ("dog", 4));
        var zip = Path.Combine(_dir, "photos.zip");
        ZipFile.CreateFromDirectory(Path.Combine(_dir, "zipped"), zip);

        var dataset = DatasetLoader.Load(zip, new DatasetOptions(), Path.Combine(_dir, "unzipped"));

        Assert.Equal(["cat", "dog"], dataset.Classes);
        Assert.Equal(8, dataset.Train.Count + dataset.Validation.Count);
    }

    [Fact]
    public void ZipOfASplitDatasetKeepsItsSplitsAndALoneSplitFolderFailsAsUnzipped()
    {
        Folder("zipsplit/photos/train", ("cat", 3), ("dog", 3));
        Folder("zipsplit/photos/test", ("cat", 1), ("dog", 1));
        var zip = Path.Combine(_dir, "split.zip");
        ZipFile.CreateFromDirectory(Path.Combine(_dir, "zipsplit"), zip);
        var lone = Path.Combine(_dir, "lone.zip");
        ZipFile.CreateFromDirectory(Path.Combine(_dir, "zipsplit", "photos", "train"), lone, CompressionLevel.Fastest, includeBaseDirectory: true);

        var dataset = DatasetLoader.Load(zip, new DatasetOptions(), Path.Combine(_dir, "unzipped-split"));
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(lone, new DatasetOptions(), Path.Combine(_dir, "unzipped-lone")));

        Assert.Equal(["cat", "dog"], dataset.Classes);
        Assert.Equal(2, dataset.Test.Count);
        Assert.StartsWith("the folder train/ names a dataset split", error.Message);
    }

    [Fact]
    public void ZipEntriesEscapingTheFolderAreRefused()
    {
        var zip = Path.Combine(_dir, "evil.zip");
        using (var archive = ZipFile.Open(zip, ZipArchiveMode.Create))
        using (var writer = new StreamWriter(archive.CreateEntry("../../escaped.txt").Open())) writer.Write("x");
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(zip, new DatasetOptions(), Path.Combine(_dir, "out")));
        Assert.Contains("points outside the archive", error.Message);
        Assert.False(File.Exists(Path.Combine(_dir, "..", "escaped.txt")));
    }

    [Fact]
    public void ZipLimitsOnEntriesAndExpandedSizeApply()
    {
        var root = Folder("limits/photos", ("cat", 3), ("dog", 3));
        var zip = Path.Combine(_dir, "limits.zip");
        ZipFile.CreateFromDirectory(Path.Combine(_dir, "limits"), zip);
        Assert.Contains("entry limit", Assert.Throws<InvalidDatasetException>(() =>
            DatasetLoader.Load(zip, new DatasetOptions { MaxZipEntries = 2 }, Path.Combine(_dir, "u1"))).Message);
        Assert.Contains("300-byte limit", Assert.Throws<InvalidDatasetException>(() =>
            DatasetLoader.Load(zip, new DatasetOptions { MaxExpandedBytes = 300 }, Path.Combine(_dir, "u2"))).Message);
    }

    [Fact]
    public void CsvManifestGivesPathsAndLabels()
    {
        var root = Folder("manifest", ("x", 3), ("y", 3));
        var lines = Directory.GetFiles(root, "*", SearchOption.AllDirectories).Order()
            .Select((f, i) => $"{Path.GetRelativePath(root, f)},{(i % 2 == 0 ? "odd" : "even")}");
        var csv = Path.Combine(root, "labels.csv");
        File.WriteAllLines(csv, ["path,label", .. lines]);

        var dataset = DatasetLoader.Load(csv, new DatasetOptions());

        Assert.Equal(["even", "odd"], dataset.Classes);
        Assert.Equal(6, dataset.Train.Count + dataset.Validation.Count);
    }

    [Fact]
    public void CsvManifestMayNameEachRowsSplit()
    {
        var root = Folder("splitmanifest", ("x", 4), ("y", 4));
        var files = Directory.GetFiles(root, "*", SearchOption.AllDirectories).Order().Select(f => Path.GetRelativePath(root, f)).ToList();
        string[] splits = ["train", "Training", "", "VAL", "train", "train", "dev", "testing"];
        var csv = Path.Combine(root, "labels.csv");
        File.WriteAllLines(csv, ["path,label,split", .. files.Select((f, i) => $"{f},{f[0]},{splits[i]}")]);

        var dataset = DatasetLoader.Load(csv, new DatasetOptions());

        Assert.Equal(["x", "y"], dataset.Classes);
        Assert.Equal(5, dataset.Train.Count);
        Assert.Equal(["x-03.png", "y-02.png"], dataset.Validation.Select(s => Path.GetFileName(s.Path)));
        Assert.Equal("y-03.png", Path.GetFileName(Assert.Single(dataset.Test).Path));

        File.WriteAllLines(csv, ["path,label,split", $"{files[0]},x,train", $"{files[1]},x,holdout"]);
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(csv, new DatasetOptions()));
        Assert.Contains("labels.csv:3: 'holdout' is not a split; use one of train, training, val,", error.Message);
    }

    [Fact]
    public void MalformedCsvLineIsReportedWithItsNumber()
    {
        var csv = Path.Combine(_dir, "bad.csv");
        File.WriteAllLines(csv, ["path,label", "a.png,cat", "b.png"]);
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(csv, new DatasetOptions()));
        Assert.Contains("bad.csv:3: 1 fields where the header has 2", error.Message);
        File.WriteAllLines(csv, ["a.png,cat", "b.png"]);
        error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(csv, new DatasetOptions()));
        Assert.Contains("bad.csv:2: expected 'path,label'", error.Message);
    }

    [Fact]
    public void QuotedNamesWrittenByPythonsCsvModuleAreReadBack()
    {
        var root = Folder("quoted", ("x", 4), ("y", 4));
        // Names with a comma, a quote and a space, as predictions.csv quotes them; Python's csv module is the independent writer.
        var files = Directory.GetFiles(root, "*", SearchOption.AllDirectories).Order().ToList();
        var renamed = files.Select((f, i) => Path.Combine(Path.GetDirectoryName(f)!, $"IMG {i}, \"copy\".png")).ToList();
        for (int i = 0; i < files.Count; i++) File.Move(files[i], renamed[i]);
        var csv = Path.Combine(root, "predictions.csv");
        var rows = string.Join(";", renamed.Select(f => Path.GetRelativePath(root, f)));
        var python = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("/usr/bin/python3",
            ["-c", "import csv,sys\nw=csv.writer(open(sys.argv[1],'w',newline=''))\nw.writerow(['path','label','predicted','confidence','top'])\n" +
                   "[w.writerow([p,p[0],p[0],'0.9',p[0]]) for p in sys.argv[2].split(';')]", csv, rows]))!;
        python.WaitForExit();
        Assert.Contains("\"x/IMG 0, \"\"copy\"\".png\"", File.ReadAllText(csv));

        var dataset = DatasetLoader.Load(csv, new DatasetOptions());

        Assert.Equal(["x", "y"], dataset.Classes);
        Assert.Equal(renamed.Order(), dataset.Train.Concat(dataset.Validation).Select(s => s.Path).Order());
    }

    [Fact]
    public void HuggingFaceMetadataAndJsonLinesManifestsAreRead()
    {
        var root = Folder("hf", ("x", 3), ("y", 3));
        var files = Directory.GetFiles(root, "*", SearchOption.AllDirectories).Order().Select(f => Path.GetRelativePath(root, f)).ToList();
        var csv = Path.Combine(root, "metadata.csv");
        File.WriteAllLines(csv, ["file_name,label", .. files.Select(f => $"{f},{f[0]}")]);
        var hf = DatasetLoader.Load(csv, new DatasetOptions());
        Assert.Equal(["x", "y"], hf.Classes);
        Assert.Equal(6, hf.Train.Count + hf.Validation.Count);

        var jsonl = Path.Combine(root, "manifest.jsonl");
        File.WriteAllLines(jsonl, files.Select((f, i) => $"{{\"image_url\": \"{f}\", \"label\": \"{f[0]}\", \"split\": \"{(i % 3 == 2 ? "validation" : "train")}\"}}"));
        var lines = DatasetLoader.Load(jsonl, new DatasetOptions());
        Assert.Equal(4, lines.Train.Count);
        Assert.Equal(2, lines.Validation.Count);
    }

    [Theory]
    [InlineData("labels.csv", "filename,class\nx/x-00.png,x", "unknown column 'filename'")]
    [InlineData("labels.csv", "path,label,weight\nx/x-00.png,x,1", "unknown column 'weight'")]
    [InlineData("labels.csv", "path,label\n../../etc/passwd.png,x", "labels.csv:2: '../../etc/passwd.png' leaves the manifest's folder")]
    [InlineData("labels.csv", "path,label\n/etc/passwd.png,x", "labels.csv:2: '/etc/passwd.png' is not a path relative")]
    [InlineData("labels.csv", "path,label\n\"x/x-00.png\",\"a\u0007b\"", "labels.csv:2: the label holds a control character")]
    [InlineData("m.jsonl", "{\"image_url\": \"https://example.com/a.png\", \"label\": \"x\"}", "m.jsonl:1: 'https://example.com/a.png' is a URL")]
    [InlineData("m.jsonl", "{\"image_url\": \"x/x-00.png\", \"label\": \"x\", \"weight\": 1}", "m.jsonl:1: unknown field 'weight'")]
    [InlineData("m.jsonl", "[1, 2]", "m.jsonl:1: expected a JSON object")]
    [InlineData("m.jsonl", "{\"image_url\": 3, \"label\": \"x\"}", "m.jsonl:1: 'image_url' must be a string")]
    public void HostileOrUnknownManifestsAreRefusedNamingTheProblem(string file, string content, string expected)
    {
        var root = Folder("hostile-" + Path.GetExtension(file)[1..] + "-" + (uint)content.GetHashCode(), ("x", 2), ("y", 2));
        var manifest = Path.Combine(root, file);
        File.WriteAllText(manifest, content + "\n");
        var error = Assert.Throws<InvalidDatasetException>(() => DatasetLoader.Load(manifest, new DatasetOptions()));
        Assert.Contains(expected, error.Message.Replace(root + "/", "", StringComparison.Ordinal));
    }

    /// <summary>A folder of class folders holding small real PNGs of distinct colours.</summary>
    private string Folder(string name, params (string Class, int Count)[] classes)
    {
        var root = Path.Combine(_dir, name);
        foreach (var (label, count) in classes)
        {
            var folder = Directory.CreateDirectory(Path.Combine(root, label)).FullName;
            for (int i = 0; i < count; i++)
            {
                using var bitmap = ImageLoaderTests.TwoColour(20 + i, 16);
                File.WriteAllBytes(Path.Combine(folder, $"{label}-{i:D2}.png"), ImageLoaderTests.Encode(bitmap, SKEncodedImageFormat.Png));
            }
        }
        return root;
    }
}
