namespace BuPO.Hybrid;

/// <summary>
/// An <see cref="IProgress{T}"/> that calls its action on the reporting thread, at once (<see cref="Progress{T}"/>
/// would post to the captured context or the thread pool, so reports could arrive late and out of order).
/// </summary>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    /// <inheritdoc />
    public void Report(T value) => report(value);
}
