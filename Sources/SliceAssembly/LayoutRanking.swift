#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SliceCore
import SliceModel
import SliceScheduler
import SliceSlices

/// One row of `slices plan --for-model`: as many instances of one profile as fit.
public struct LayoutSuggestion: Codable, Sendable {
    public var profile: String
    public var multiprocessors: Int
    public var instances: Int
    /// Where the curve came from: "mig:<profile>", "sm:<SMs> partition (proxy)", or nil.
    public var measuredOn: String?
    public var batch: Int?
    public var imagesPerSecondPerSlice: Double?
    public var totalImagesPerSecond: Double?
    public var note: String

    enum CodingKeys: String, CodingKey {
        case profile, instances, batch, note
        case multiprocessors = "sms"
        case measuredOn = "measured_on"
        case imagesPerSecondPerSlice = "images_per_s_per_slice"
        case totalImagesPerSecond = "total_images_per_s"
    }
}

/// Ranks the homogeneous MIG layouts of a GPU for one model by the throughput its stored latency
/// profiles promise at an SLO: per profile, as many instances as fit, the batch PREBA's knee rule
/// picks on the profile measured on that MIG profile (or on an SM partition of as many SMs, as a
/// proxy), best total first.
public enum LayoutRanking {
    public static func rank(geometry: MIGGeometry, directory: ModelDirectory, sloMs: Double) throws -> [LayoutSuggestion] {
        let fp = fingerprint(try FileIO.read(directory.modelPath))
        // Every stored profile of this model file and software version.
        var stored: [BatchingProfile] = []
        for folder in ProfileStore.folders(directory: directory, fingerprint: fp) {
            for name in ((try? FileIO.list(folder)) ?? []).sorted() where name.hasSuffix(".json") {
                guard let bytes = try? FileIO.read(folder + "/" + name),
                      let profile = try? JSONDecoder().decode(BatchingProfile.self, from: Data(bytes)),
                      profile.modelFingerprint == fp, profile.software == SliceServeVersion.current else { continue }
                stored.append(profile)
            }
        }
        var rows: [LayoutSuggestion] = []
        for profile in geometry.profiles {
            var fits = 0
            for n in stride(from: profile.maxInstances, through: 1, by: -1) {
                if (try? MIGPlanner.plan(Array(repeating: profile.name, count: n), on: geometry)) != nil { fits = n; break }
            }
            var row = LayoutSuggestion(profile: profile.name, multiprocessors: profile.multiprocessors, instances: fits, note: "")
            let proxyKind = "sm:\(profile.multiprocessors) of \(geometry.productName)"
            let curve = stored.first { $0.sliceKind == "mig:\(profile.name)" } ?? stored.first { $0.sliceKind == proxyKind }
            guard fits > 0, let curve, let auto = BatchingPolicy.auto(profile: curve, slices: fits, sloMs: sloMs, base: BatchingConfig()),
                  let point = curve.points.first(where: { $0.batch == auto.config.maxBatchSize }) else {
                row.note = fits == 0 ? "does not fit" : "not measured: sliceserve profile --model \(directory.path) --slices sm:\(fits)x\(profile.multiprocessors) on a \(geometry.productName)"
                rows.append(row)
                continue
            }
            row.measuredOn = curve.sliceKind.hasPrefix("mig:") ? curve.sliceKind : "sm:\(profile.multiprocessors) partition (proxy for MIG)"
            row.batch = point.batch
            row.imagesPerSecondPerSlice = point.imagesPerSecond
            row.totalImagesPerSecond = point.imagesPerSecond * Double(fits)
            row.note = point.p95Ms > sloMs ? "p95 \(point.p95Ms) ms is over the SLO even at batch 1" : "p95 \(point.p95Ms) ms at batch \(point.batch)"
            rows.append(row)
        }
        return rows.sorted { ($0.totalImagesPerSecond ?? -1) > ($1.totalImagesPerSecond ?? -1) }
    }
}
