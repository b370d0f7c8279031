namespace FineTune.Core;

/// <summary>
/// The input cannot work (job spec, dataset, weights, device): trying again will not help, so the workflow fails
/// the run at once instead of retrying.
/// </summary>
public abstract class BadInputException(string message, Exception? inner = null) : Exception(message, inner);
