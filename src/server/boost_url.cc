// Boost.URL's compiled part, built into brig (Debian ships its headers with 1.81, not a library).
#include <boost/url/src.hpp>
