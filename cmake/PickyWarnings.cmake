# Picky warnings for our own targets (not for third-party code). -Werror only when
# INTENTRA_WERROR is on, so a newer compiler on a user's machine cannot break the build.
set(INTENTRA_WARNINGS
  -Wall -Wextra -Wshadow -Wpointer-arith -Wformat=2 -Wundef -Wvla
  -Wmissing-prototypes -Wstrict-prototypes -Wold-style-definition
  -Wimplicit-fallthrough -Wcast-qual -Wwrite-strings -Wnull-dereference)
if(INTENTRA_WERROR)
  list(APPEND INTENTRA_WARNINGS -Werror)
endif()

# intentra_target_defaults(<target>): warnings + hidden symbols for one of our targets.
function(intentra_target_defaults target)
  target_compile_options(${target} PRIVATE ${INTENTRA_WARNINGS})
  set_target_properties(${target} PROPERTIES C_VISIBILITY_PRESET hidden)
endfunction()
