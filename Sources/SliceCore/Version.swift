/// SliceServe's version, reported by `sliceserve --version` and `sliceserve doctor`.
public enum SliceServeVersion {
    public static let current = "0.1.0"
}
