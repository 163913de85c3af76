// filesystem.Filesystem/CreateWatcher, GetWatcherEvents, RemoveWatcher: polling watchers.
#include "server/envd/rpc.h"
#include "server/envd/watch_event.h"

namespace brig::server::envd {

Route create_watcher(const Call& call) {
  return unary<filesystem::CreateWatcherRequest, filesystem::CreateWatcherResponse>(
      "filesystem.CreateWatcher",
      [call](const filesystem::CreateWatcherRequest& in) -> Result<filesystem::CreateWatcherResponse> {
        BRIG_TRY_ASSIGN(id, call.core.create_watcher(*call.live, in.path(), in.recursive(), call.user));
        filesystem::CreateWatcherResponse out;
        out.set_watcher_id(id);
        return out;
      });
}

Route get_watcher_events(const Call& call) {
  return unary<filesystem::GetWatcherEventsRequest, filesystem::GetWatcherEventsResponse>(
      "filesystem.GetWatcherEvents",
      [call](const filesystem::GetWatcherEventsRequest& in) -> Result<filesystem::GetWatcherEventsResponse> {
        BRIG_TRY_ASSIGN(events, call.core.watcher_events(*call.live, in.watcher_id()));
        filesystem::GetWatcherEventsResponse out;
        for (auto& ev : events) {
          auto* fe = out.add_events();
          fe->set_name(ev.name);
          fe->set_type(event_type(ev.op));
        }
        return out;
      });
}

Route remove_watcher(const Call& call) {
  return unary<filesystem::RemoveWatcherRequest, filesystem::RemoveWatcherResponse>(
      "filesystem.RemoveWatcher",
      [call](const filesystem::RemoveWatcherRequest& in) -> Result<filesystem::RemoveWatcherResponse> {
        BRIG_TRY(call.core.remove_watcher(*call.live, in.watcher_id()));
        return filesystem::RemoveWatcherResponse{};
      });
}

}  // namespace brig::server::envd
