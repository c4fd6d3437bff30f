using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.RL.Algorithms;

/// <summary>The learning rate's shape after warm-up (<c>--lr-schedule</c>).</summary>
public enum LrScheduleShape
{
    /// <summary>The learning rate stays at --lr (<c>constant</c>).</summary>
    Constant,
    /// <summary>Cosine decay from --lr to min-lr-ratio × lr over the remaining steps (<c>cosine</c>).</summary>
    Cosine,
}

/// <summary>Learning rate per training step: linear warm-up, then constant or cosine decay to min-lr-ratio × lr.</summary>
public static class LrSchedule
{
    /// <summary>The learning rate of 1-based training step <paramref name="step"/>.</summary>
    public static double At(TrainOptions o, int step)
    {
        if (o.WarmupSteps > 0 && step <= o.WarmupSteps) return o.Lr * step / o.WarmupSteps;
        if (o.LrSchedule != LrScheduleShape.Cosine) return o.Lr;
        var span = Math.Max(1, o.Steps - o.WarmupSteps - 1);
        var progress = Math.Clamp((double)(step - 1 - o.WarmupSteps) / span, 0, 1);
        var min = o.Lr * o.MinLrRatio;
        return min + (o.Lr - min) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
