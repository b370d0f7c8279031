using System.Globalization;

namespace FineTune.Core.Data;

/// <summary>
/// Per class, a seeded shuffle of the sorted files: the first round(n·validation) go to validation, the next
/// round(n·test) to test, the rest to training, which keeps at least one. Validation comes first, so a test
/// share leaves the validation set of the same seed as it was.
/// </summary>
internal static class StratifiedSplit
{
    public static (List<ImageSample> Train, List<ImageSample> Validation, List<ImageSample> Test) Of(
        List<List<string>> byClass, double validationFraction, double testFraction, int seed)
    {
        if (validationFraction is < 0 or >= 1)
            throw new InvalidDatasetException($"validation fraction {validationFraction.ToString(CultureInfo.InvariantCulture)} is not in [0, 1)");
        if (testFraction is < 0 or >= 1)
            throw new InvalidDatasetException($"test fraction {testFraction.ToString(CultureInfo.InvariantCulture)} is not in [0, 1)");
        if (validationFraction + testFraction >= 1)
            throw new InvalidDatasetException("the validation and test fractions leave nothing to train on: their sum must be below 1");
        var train = new List<ImageSample>();
        var validation = new List<ImageSample>();
        var test = new List<ImageSample>();
        for (int label = 0; label < byClass.Count; label++)
        {
            var files = byClass[label].ToArray();
            new Random(Training.Seeds.Mix(seed, label)).Shuffle(files);
            int held = Math.Max(0, files.Length - 1);
            int valCount = Math.Min(held, Share(files.Length, validationFraction));
            int testCount = Math.Min(held - valCount, Share(files.Length, testFraction));
            validation.AddRange(Labelled(files.Take(valCount), label));
            test.AddRange(Labelled(files.Skip(valCount).Take(testCount), label));
            train.AddRange(Labelled(files.Skip(valCount + testCount), label));
        }
        return (train, validation, test);
    }

    private static int Share(int count, double fraction) => (int)Math.Round(count * fraction, MidpointRounding.AwayFromZero);

    private static IEnumerable<ImageSample> Labelled(IEnumerable<string> files, int label) =>
        files.Order(StringComparer.Ordinal).Select(f => new ImageSample(f, label));
}
